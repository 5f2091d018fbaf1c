import CNvgre
import Foundation
import NvgreDatapath
import NvgreLab
import NvgreWire
import Testing

/// An instance pinned under bpffs outlives the process that loaded it: maps are reused by
/// the next load of the same directory, a pinned link keeps XDP attached, and removing the
/// pins removes everything.
struct PinningTests {
    @Test func mapsAndLinksOutliveTheLoaderAndGoWithThePins() throws {
        let net = LabNetwork(tag: "pin")
        let ns = try net.namespace("h")
        try net.veth("ul", in: ns, "ulpeer", in: try net.namespace("p"))
        let dir = "/sys/fs/bpf/\(net.prefix)"
        defer { try? Datapath.removePins(at: dir) }
        var small = LoadOptions()
        small.maxLookups = 64
        let key = nv_lookup_key(vsid: 5001, ca: "198.19.1.1")

        do {
            let first = try Datapath(options: small, pinDirectory: dir)
            try first.lookups.update(key, nv_lookup_val(pa: "198.18.0.1", mac: "02:00:00:00:01:01"))
            let link = try NetworkNamespace.run(in: ns) { try first.attach(.fromFabric, interface: "ul") }
            try link.pin(at: "\(dir)/link-ul")
        }
        // The loader and its link objects are gone; the program stays attached.
        #expect(try net.ip(ns, "link show ul").contains("prog/xdp"))
        let pins = try FileManager.default.contentsOfDirectory(atPath: dir)
        #expect(pins.contains("lookups") && pins.contains("link-ul") && pins.contains("exceptions"))

        let second = try Datapath(options: small, pinDirectory: dir)
        #expect(second.lookups.lookup(key)?.providerAddress == "198.18.0.1")

        try Datapath.removePins(at: dir)
        #expect(!FileManager.default.fileExists(atPath: dir))
        // The kernel may free the last link reference from a work queue: allow it a moment.
        var attached = true
        for _ in 0..<50 where attached {
            attached = try net.ip(ns, "link show ul").contains("prog/xdp")
            if attached { usleep(20_000) }
        }
        #expect(!attached)
    }

    @Test func pinningOutsideBpffsSaysWhatToDo() {
        do {
            _ = try Datapath(options: LoadOptions(), pinDirectory: "/tmp/nvgre-not-bpffs-\(getpid())")
            Issue.record("pinned outside bpffs")
        } catch {
            #expect("\(error)".contains("mount -t bpf bpf /sys/fs/bpf"), "\(error)")
        }
    }
}
