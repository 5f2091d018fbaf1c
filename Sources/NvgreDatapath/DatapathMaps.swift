import CNvgre

#if canImport(Glibc)
    import Glibc
#endif

/// The maps of one data path instance, typed by the ABI header: either those of a loaded
/// object, or those pinned under an instance's bpffs directory (opened without loading any
/// program, which is what makes `nvgre lookup add` cheap). Every map of MapRegistry is
/// here by its C name; the typed views are in DatapathMaps+Typed.swift.
/// Immutable after init (descriptors only), hence safe to share between threads.
public final class DatapathMaps: @unchecked Sendable {
    private let fds: [String: Int32]
    private let infos: [String: bpf_map_info]
    /// Descriptors opened from pins are ours to close; a loaded object's belong to libbpf.
    private let ownsDescriptors: Bool
    /// The lookup records, in the table `lookups` points at.
    public let lookups: RecordTable

    init(owning: Bool = false, fd: (String) -> Int32) {
        ownsDescriptors = owning
        var fds: [String: Int32] = [:], infos: [String: bpf_map_info] = [:]
        for name in MapRegistry.names {
            let f = fd(name)
            fds[name] = f
            var info = bpf_map_info()
            var len = UInt32(MemoryLayout<bpf_map_info>.size)
            if f >= 0 && bpf_obj_get_info_by_fd(f, &info, &len) == 0 { infos[name] = info }
        }
        self.fds = fds
        self.infos = infos
        lookups = RecordTable(outerFD: fds["lookups"] ?? -1)
    }

    /// Opens the maps pinned in an instance directory.
    public convenience init(pinDirectory dir: String) throws {
        var opened: [String: Int32] = [:]
        for name in MapRegistry.names {
            let fd = bpf_obj_get("\(dir)/\(name)")
            if fd < 0 {
                let e = errno
                opened.values.forEach { _ = close($0) }
                throw DatapathError("open the pinned map \(dir)/\(name)", errno: e)
            }
            opened[name] = fd
        }
        self.init(owning: true) { opened[$0] ?? -1 }
    }

    deinit {
        guard ownsDescriptors else { return }
        for fd in fds.values where fd >= 0 { close(fd) }
    }

    /// The typed view of map `name`. Its key and value types must have the sizes the kernel
    /// reports for the map: a Swift view that disagrees with bpf/maps.h stops here.
    public subscript<Key, Value>(_ name: String) -> BPFMap<Key, Value> {
        let info = infos[name]
        if let info {
            precondition(
                info.key_size == MemoryLayout<Key>.size && info.value_size == MemoryLayout<Value>.size,
                "map \(name): the kernel has \(info.key_size)-byte keys and \(info.value_size)-byte values, the "
                    + "view \(Key.self) and \(Value.self)"
            )
        }
        return BPFMap(
            fd: fds[name] ?? -1, name: name, perCPU: info.map { MapRegistry.isPerCPU(type: $0.type) } ?? false)
    }

    /// Map `name` in raw bytes, with the sizes the kernel reports (the control plane's diff
    /// and apply need no types); the lookup records' table for `lookups`.
    public func raw(_ name: String) -> any RawMapAccess {
        if name == "lookups" { return lookups }
        let info = infos[name] ?? bpf_map_info()
        return BPFMap<UInt8, UInt8>(
            fd: fds[name] ?? -1, name: name, perCPU: MapRegistry.isPerCPU(type: info.type),
            keySize: Int(info.key_size), valueSize: Int(info.value_size))
    }

    /// The descriptor of map `name` (the exception ring's, for libbpf's ring_buffer).
    public func fd(_ name: String) -> Int32 { fds[name] ?? -1 }

    // MARK: counters

    /// A reason's packets and bytes summed over all CPUs.
    public func dropCount(_ reason: nv_drop_reason) -> (packets: UInt64, bytes: UInt64) {
        sum(dropStats.lookupPerCPU(reason.rawValue))
    }

    public func exceptionCount(_ reason: nv_exception_reason) -> (packets: UInt64, bytes: UInt64) {
        sum(exceptionStats.lookupPerCPU(reason.rawValue))
    }

    public func gatewayCount(_ counter: nv_gw_counter) -> (packets: UInt64, bytes: UInt64) {
        sum(gatewayStats.lookupPerCPU(counter.rawValue))
    }

    /// Per-VSID counters of one stats slot summed over all CPUs, by counter id.
    public func vsidCounters(slot: UInt32) -> [nv_vsid_counter: (packets: UInt64, bytes: UInt64)] {
        var out: [nv_vsid_counter: (packets: UInt64, bytes: UInt64)] = [:]
        let perCPU = vsidStats.lookupPerCPU(slot)
        for counter in nv_vsid_counter.allCases {
            // packets[] and bytes[] are indexed by counter
            let offset = Int(counter.rawValue) * MemoryLayout<UInt64>.stride
            var p: UInt64 = 0, b: UInt64 = 0
            for var s in perCPU {
                withUnsafeBytes(of: &s.packets) { p += $0.load(fromByteOffset: offset, as: UInt64.self) }
                withUnsafeBytes(of: &s.bytes) { b += $0.load(fromByteOffset: offset, as: UInt64.self) }
            }
            out[counter] = (p, b)
        }
        return out
    }

    /// A routing domain's counter summed over all CPUs.
    public func domainCount(_ rdid: UInt32, _ counter: nv_domain_counter) -> (packets: UInt64, bytes: UInt64) {
        sum(domainStats.lookupPerCPU(nv_domain_counter_key(rdid: rdid, counter: counter.rawValue)))
    }

    private func sum(_ values: [nv_reason_stats]) -> (packets: UInt64, bytes: UInt64) {
        values.reduce((0, 0)) { ($0.0 + $1.packets, $0.1 + $1.bytes) }
    }
}
