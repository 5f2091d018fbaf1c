import CNvgre

#if canImport(Glibc)
    import Glibc
#endif

/// Whole-map reads and batched writes in raw bytes, for the control plane's diff and apply.
/// Hash maps use the kernel's batch operations (one syscall per few thousand entries); maps
/// without them (the LPM trie, arrays) fall back to one call per entry.
extension BPFMap {
    /// Every entry, read in batches where the map type allows it.
    public func rawEntries() throws -> [(key: RawBytes, value: RawBytes)] {
        precondition(!perCPU, "raw entries of per-CPU maps are not read")
        if let batched = try rawEntriesBatched() { return batched }
        var out: [(key: RawBytes, value: RawBytes)] = []
        let cur = UnsafeMutableRawPointer.allocate(byteCount: keySize, alignment: 8)
        let next = UnsafeMutableRawPointer.allocate(byteCount: keySize, alignment: 8)
        let value = UnsafeMutableRawPointer.allocate(byteCount: valueSize, alignment: 8)
        defer {
            cur.deallocate()
            next.deallocate()
            value.deallocate()
        }
        var rc = bpf_map_get_next_key(fd, nil, next)
        while rc == 0 {
            if bpf_map_lookup_elem(fd, next, value) == 0 {
                out.append(
                    (
                        RawBytes(UnsafeRawBufferPointer(start: next, count: keySize)),
                        RawBytes(UnsafeRawBufferPointer(start: value, count: valueSize))
                    ))
            }
            cur.copyMemory(from: next, byteCount: keySize)
            rc = bpf_map_get_next_key(fd, cur, next)
        }
        return out
    }

    private func rawEntriesBatched() throws -> [(key: RawBytes, value: RawBytes)]? {
        let chunk = 8192
        let keys = UnsafeMutableRawPointer.allocate(byteCount: keySize * chunk, alignment: 8)
        let values = UnsafeMutableRawPointer.allocate(byteCount: valueSize * chunk, alignment: 8)
        let inToken = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 8)
        let outToken = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 8)
        defer {
            keys.deallocate()
            values.deallocate()
            inToken.deallocate()
            outToken.deallocate()
        }
        var opts = bpf_map_batch_opts()
        prepareOpts(&opts, size: nv_sizeof_batch_opts())
        var out: [(key: RawBytes, value: RawBytes)] = []
        var first = true
        while true {
            var count = UInt32(chunk)
            let rc = bpf_map_lookup_batch(fd, first ? nil : inToken, outToken, keys, values, &count, &opts)
            let err = rc < 0 ? (rc == -1 ? errno : -rc) : 0
            if err != 0 && err != ENOENT {
                if first && (err == EINVAL || err == ENOTSUP || err == 524 /* ENOTSUPP */) { return nil }
                throw DatapathError("read map \(name) in batches", errno: err)
            }
            for i in 0..<Int(count) {
                out.append(
                    (
                        RawBytes(UnsafeRawBufferPointer(start: keys + i * keySize, count: keySize)),
                        RawBytes(UnsafeRawBufferPointer(start: values + i * valueSize, count: valueSize))
                    ))
            }
            if err == ENOENT { return out }
            inToken.copyMemory(from: outToken, byteCount: 64)
            first = false
        }
    }

    /// Writes the entries (BPF_ANY), in batches where the map type allows it.
    public func rawUpdate(_ entries: ArraySlice<(key: RawBytes, value: RawBytes)>) throws {
        guard !entries.isEmpty else { return }
        let chunk = 16384
        let keys = UnsafeMutableRawPointer.allocate(byteCount: keySize * chunk, alignment: 8)
        let values = UnsafeMutableRawPointer.allocate(byteCount: valueSize * chunk, alignment: 8)
        defer {
            keys.deallocate()
            values.deallocate()
        }
        var opts = bpf_map_batch_opts()
        prepareOpts(&opts, size: nv_sizeof_batch_opts())
        var start = entries.startIndex
        var batched = true
        while start < entries.endIndex {
            let end = min(start + chunk, entries.endIndex)
            if batched {
                for i in start..<end {
                    entries[i].key.copy(to: keys + (i - start) * keySize)
                    entries[i].value.copy(to: values + (i - start) * valueSize)
                }
                var count = UInt32(end - start)
                let rc = bpf_map_update_batch(fd, keys, values, &count, &opts)
                if rc == 0 {
                    start = end
                    continue
                }
                let err = rc == -1 ? errno : -rc
                guard start == entries.startIndex, count == 0, err == EINVAL || err == ENOTSUP || err == 524 else {
                    throw DatapathError("write \(end - start) entries to map \(name)", errno: err)
                }
                batched = false  // this map type has no batch update: one call per entry
            }
            for i in start..<end { try rawUpdate(entries[i].key, entries[i].value) }
            start = end
        }
    }

    public func rawUpdate(_ key: RawBytes, _ value: RawBytes, flags: UInt64 = UInt64(BPF_ANY)) throws {
        var k = [UInt8](repeating: 0, count: keySize), v = [UInt8](repeating: 0, count: valueSize)
        k.withUnsafeMutableBytes { key.copy(to: $0.baseAddress!) }
        v.withUnsafeMutableBytes { value.copy(to: $0.baseAddress!) }
        try check("write to map \(name)", bpf_map_update_elem(fd, k, v, flags))
    }

    /// Deletes the keys, in batches where the map type allows it; a key already gone is not
    /// an error.
    public func rawDelete(_ keys: [RawBytes]) throws {
        guard !keys.isEmpty else { return }
        let chunk = 16384
        let buf = UnsafeMutableRawPointer.allocate(byteCount: keySize * chunk, alignment: 8)
        defer { buf.deallocate() }
        var opts = bpf_map_batch_opts()
        prepareOpts(&opts, size: nv_sizeof_batch_opts())
        var start = 0
        while start < keys.count {
            let end = min(start + chunk, keys.count)
            for i in start..<end { keys[i].copy(to: buf + (i - start) * keySize) }
            var count = UInt32(end - start)
            if bpf_map_delete_batch(fd, buf, &count, &opts) == 0 {
                start = end
                continue
            }
            // Not batchable here, or a key was missing: the rest of the chunk one by one.
            for i in (start + Int(count))..<end {
                let rc = bpf_map_delete_elem(fd, buf + (i - start) * keySize)
                if rc < 0 && errno != ENOENT && rc != -ENOENT { try check("delete from map \(name)", rc) }
            }
            start = end
        }
    }

    /// Sets every CPU's value of `key` to zero (counters of a reused slot).
    public func zeroPerCPU(_ key: Key) throws {
        let cpus = Int(libbpf_num_possible_cpus())
        let stride = (valueSize + 7) & ~7
        let buf = UnsafeMutableRawPointer.allocate(byteCount: stride * cpus, alignment: 8)
        defer { buf.deallocate() }
        buf.initializeMemory(as: UInt8.self, repeating: 0, count: stride * cpus)
        var k = key
        try check(
            "clear counters in map \(name)",
            withUnsafeBytes(of: &k) { bpf_map_update_elem(fd, $0.baseAddress, buf, UInt64(BPF_ANY)) })
    }
}
