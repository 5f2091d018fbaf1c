import CNvgre

#if canImport(Glibc)
    import Glibc
#endif

/// A typed view of one BPF map. Key and Value are the C structs imported from the ABI
/// header (or fixed-width integers), so the layout is the kernel's, never a hand copy.
public struct BPFMap<Key, Value> {
    public let fd: Int32
    public let name: String
    /// Per-CPU maps hold one value per possible CPU.
    public let perCPU: Bool
    /// Bytes of a key and of a value: the types' sizes, or the kernel's for a raw view.
    let keySize: Int
    let valueSize: Int

    public init(fd: Int32, name: String, perCPU: Bool = false) {
        self.init(
            fd: fd, name: name, perCPU: perCPU, keySize: MemoryLayout<Key>.size, valueSize: MemoryLayout<Value>.size)
    }

    init(fd: Int32, name: String, perCPU: Bool, keySize: Int, valueSize: Int) {
        self.fd = fd
        self.name = name
        self.perCPU = perCPU
        self.keySize = keySize
        self.valueSize = valueSize
    }

    /// The map's capacity as the kernel reports it.
    public var maxEntries: UInt32 {
        var info = bpf_map_info()
        var len = UInt32(MemoryLayout<bpf_map_info>.size)
        return bpf_obj_get_info_by_fd(fd, &info, &len) == 0 ? info.max_entries : 0
    }

    public func update(_ key: Key, _ value: Value, flags: UInt64 = UInt64(BPF_ANY)) throws {
        let rc = withBytes(key) { k in withBytes(value) { v in bpf_map_update_elem(fd, k, v, flags) } }
        try check("update \(name)", rc)
    }

    /// Key and Value are plain C structs or integers; this hands their bytes to libbpf.
    private func withBytes<T, R>(_ value: T, _ body: (UnsafeRawPointer?) -> R) -> R {
        var copy = value
        return withUnsafeBytes(of: &copy) { body($0.baseAddress) }
    }

    public func lookup(_ key: Key) -> Value? {
        precondition(!perCPU, "use lookupPerCPU on per-CPU maps")
        let v = UnsafeMutablePointer<Value>.allocate(capacity: 1)
        defer { v.deallocate() }
        return withBytes(key) { bpf_map_lookup_elem(fd, $0, v) } == 0 ? v.pointee : nil
    }

    /// All CPUs' values (each slot rounded up to 8 bytes as the kernel lays them out).
    public func lookupPerCPU(_ key: Key) -> [Value] {
        let cpus = Int(libbpf_num_possible_cpus())
        let stride = (MemoryLayout<Value>.size + 7) & ~7
        let buf = UnsafeMutableRawPointer.allocate(byteCount: stride * cpus, alignment: 8)
        defer { buf.deallocate() }
        guard withBytes(key, { bpf_map_lookup_elem(fd, $0, buf) }) == 0 else { return [] }
        return (0..<cpus).map { buf.load(fromByteOffset: $0 * stride, as: Value.self) }
    }

    /// Writes one value per possible CPU (a per-CPU map's slot).
    public func updatePerCPU(_ key: Key, _ values: [Value]) throws {
        let cpus = Int(libbpf_num_possible_cpus())
        let stride = (MemoryLayout<Value>.size + 7) & ~7
        precondition(values.count == cpus, "one value per possible CPU")
        let buf = UnsafeMutableRawPointer.allocate(byteCount: stride * cpus, alignment: 8)
        defer { buf.deallocate() }
        buf.initializeMemory(as: UInt8.self, repeating: 0, count: stride * cpus)
        for (i, v) in values.enumerated() { buf.storeBytes(of: v, toByteOffset: i * stride, as: Value.self) }
        try check("update \(name)", withBytes(key) { bpf_map_update_elem(fd, $0, buf, UInt64(BPF_ANY)) })
    }

    @discardableResult
    public func delete(_ key: Key) throws -> Bool {
        let rc = withBytes(key) { bpf_map_delete_elem(fd, $0) }
        if rc == -ENOENT || (rc < 0 && errno == ENOENT) { return false }
        try check("delete from \(name)", rc)
        return true
    }

    /// Every key in the map (a snapshot; the map may change meanwhile).
    public func keys() -> [Key] {
        var out: [Key] = []
        let cur = UnsafeMutablePointer<Key>.allocate(capacity: 1)
        let next = UnsafeMutablePointer<Key>.allocate(capacity: 1)
        defer {
            cur.deallocate()
            next.deallocate()
        }
        var rc = bpf_map_get_next_key(fd, nil, next)
        while rc == 0 {
            out.append(next.pointee)
            cur.pointee = next.pointee
            rc = bpf_map_get_next_key(fd, cur, next)
        }
        return out
    }
}
