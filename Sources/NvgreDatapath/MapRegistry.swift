import CNvgre

/// Every map of the data path, in one place. The BPF object is the list (bpf/maps.h, read
/// from the generated skeleton); this adds only what the object cannot say: which load
/// option sizes a map. Typed views are one line each in DatapathMaps+Typed.swift; whether a
/// map is per-CPU, its key and value sizes and its capacity come from the kernel.
///
/// Adding a map: declare it in bpf/maps.h (key and value types in nvgre_abi.h), add its
/// typed view; if `nvgre up` sizes it, a LoadOptions field and a line in `sizedBy`; if
/// policy fills it, a PolicyMap case (NvgreControl) and the compiler's code for it.
public enum MapRegistry {
    /// The C names of every map, as declared and as pinned.
    public static let names: [String] = {
        var buf = [UnsafePointer<CChar>?](repeating: nil, count: 256)
        let n = Int(nv_map_names(&buf, Int32(buf.count)))
        precondition(n > 0, "the skeleton lists no maps")
        return buf.prefix(n).map { String(cString: $0!) }
    }()

    /// The maps whose capacity `nvgre up` sets, and the option that does (the others keep
    /// the size bpf/maps.h gives them).
    static let sizedBy: [String: KeyPath<LoadOptions, UInt32>] = [
        "subnets": \.maxSubnets, "vsid_stats": \.maxSubnets, "ports": \.maxPorts,
        "flood_lists": \.maxPorts,
        "port_cas": \.maxPortAddresses, "routes": \.maxRoutes, "exceptions": \.exceptionRingBytes,
        "nat_out": \.maxNATFlows, "nat_in": \.maxNATFlows
    ]

    /// Per-CPU maps (counters, the exception shares) and the exception ring belong to one
    /// load; a tracing load shares every other map (policy, NAT flows) with the instance.
    static func belongsToOneLoad(type: bpf_map_type) -> Bool {
        [BPF_MAP_TYPE_PERCPU_ARRAY, BPF_MAP_TYPE_PERCPU_HASH, BPF_MAP_TYPE_LRU_PERCPU_HASH, BPF_MAP_TYPE_RINGBUF]
            .contains(type)
    }

    static func isPerCPU(type: UInt32) -> Bool {
        [BPF_MAP_TYPE_PERCPU_ARRAY, BPF_MAP_TYPE_PERCPU_HASH, BPF_MAP_TYPE_LRU_PERCPU_HASH].map(\.rawValue).contains(
            type)
    }
}
