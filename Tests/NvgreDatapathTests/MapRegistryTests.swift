import CNvgre
import Foundation
import NvgreDatapath
import NvgreLab
import Testing

/// The one list of maps: what the object declares, what an instance pins and opens, and
/// typed views whose key and value sizes are the kernel's.
struct MapRegistryTests {
    @Test func theRegistryIsTheObjectsMapsAndEveryViewFitsThem() throws {
        let names = Set(MapRegistry.names)
        #expect(names.count == MapRegistry.names.count, "each map once")
        #expect(names.isSuperset(of: ["lookups", "config", "exceptions", "nat_out", "infra", "domain_stats"]))
        #expect(!names.contains { $0.contains(".") }, "libbpf's internal maps are not the data path's")

        let net = LabNetwork(tag: "registry")
        let dir = "/sys/fs/bpf/\(net.prefix)"
        defer { try? Datapath.removePins(at: dir) }
        let dp = try Datapath(options: LoadOptions(), pinDirectory: dir)
        #expect(
            Set(try FileManager.default.contentsOfDirectory(atPath: dir)) == names, "every map pinned, nothing else")
        let pinned = try DatapathMaps(pinDirectory: dir)
        for maps in [dp.maps, pinned] {
            for name in MapRegistry.names { #expect(maps.fd(name) >= 0, "\(name)") }
            // Every typed view (a size that disagrees with the kernel's stops the process).
            #expect(maps.lookups.maxEntries == UInt32(NV_DEFAULT_MAX_LOOKUPS))
            #expect(
                maps.vsidStats.perCPU && maps.domainStats.perCPU && maps.exceptionBuckets.perCPU && !maps.natIn.perCPU)
            _ = [
                maps.subnets.fd, maps.ports.fd, maps.portAddresses.fd, maps.routes.fd, maps.localPAs.fd, maps.config.fd,
                maps.dropStats.fd, maps.exceptionStats.fd, maps.exceptionRingFD, maps.infrastructure.fd,
                maps.gatewayDomains.fd,
                maps.gatewayPrefixes.fd, maps.gatewayRouted.fd, maps.externalAddresses.fd, maps.services.fd,
                maps.natOut.fd,
                maps.gatewayStats.fd
            ]
        }
        #expect(pinned.config.fd != dp.maps.config.fd, "opened from the pins, not borrowed")
    }
}
