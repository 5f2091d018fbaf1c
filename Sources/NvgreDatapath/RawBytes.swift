#if canImport(Glibc)
    import Glibc
#endif

/// The bytes of one map key or value (at most 48, which every ABI struct fits: nv_config
/// is the largest), stored inline so that a million of them hash and compare without a
/// heap allocation each.
public struct RawBytes: Hashable, Sendable {
    private var w0: UInt64 = 0, w1: UInt64 = 0, w2: UInt64 = 0, w3: UInt64 = 0, w4: UInt64 = 0, w5: UInt64 = 0
    public private(set) var count: Int

    public static let capacity = 48

    /// The bytes of a C struct or integer from the ABI header.
    public init<T>(of value: T) {
        var v = value
        self = withUnsafeBytes(of: &v) { RawBytes($0) }
    }

    public init(_ bytes: UnsafeRawBufferPointer) {
        precondition(bytes.count <= Self.capacity, "a map key or value larger than \(Self.capacity) bytes")
        count = bytes.count
        withStorage { $0.copyMemory(from: bytes) }
    }

    private mutating func withStorage(_ body: (UnsafeMutableRawBufferPointer) -> Void) {
        let n = count
        withUnsafeMutableBytes(of: &self) { all in body(UnsafeMutableRawBufferPointer(rebasing: all[0..<n])) }
    }

    /// Reads the bytes back as a C struct or integer of exactly this size.
    public func load<T>(as: T.Type) -> T {
        precondition(MemoryLayout<T>.size == count, "size mismatch")
        var copy = self
        return withUnsafeBytes(of: &copy) { $0.loadUnaligned(as: T.self) }
    }

    /// Copies the bytes to `dst` (which has room for `count`).
    public func copy(to dst: UnsafeMutableRawPointer) {
        var copy = self
        withUnsafeBytes(of: &copy) { dst.copyMemory(from: $0.baseAddress!, byteCount: count) }
    }

    /// A hash of the bytes for MapImage's own index: a few multiplications over the inline
    /// words (bytes past `count` are zero), no Hasher.
    @inline(__always)
    public var quickHash: UInt64 {
        @inline(__always) func mix(_ h: UInt64, _ w: UInt64) -> UInt64 {
            let m = (h ^ w) &* 0xFF51_AFD7_ED55_8CCD
            return m ^ (m >> 29)
        }
        let words = (count + 7) / 8
        var h = mix(0x9E37_79B9_7F4A_7C15 ^ UInt64(count), w0)
        if words > 1 { h = mix(h, w1) }
        if words > 2 { h = mix(h, w2) }
        if words > 3 { h = mix(h, w3) }
        if words > 4 { h = mix(h, w4) }
        if words > 5 { h = mix(h, w5) }
        // A full finalizer: keys that differ only in a word's high bytes (the last bytes of
        // an address) must still spread over the low bits an index masks, whatever order
        // they come in (the lookup records' table lists them in its own hash order).
        h = (h ^ (h >> 33)) &* 0xC4CE_B9FE_1A85_EC53
        return h ^ (h >> 33)
    }

    /// Whether the bytes equal the `count` bytes at `p`.
    @inline(__always)
    public func equals(_ p: UnsafeRawPointer) -> Bool {
        var copy = self
        let n = count
        return withUnsafeBytes(of: &copy) { memcmp($0.baseAddress!, p, n) == 0 }
    }

    /// Calls `body` with the bytes in place (no array made).
    public func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        var copy = self
        let n = count
        return try withUnsafeBytes(of: &copy) { try body(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
    }

    public var bytes: [UInt8] {
        var copy = self
        return withUnsafeBytes(of: &copy) { Array($0.prefix(count)) }
    }
}
