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

    public var bytes: [UInt8] {
        var copy = self
        return withUnsafeBytes(of: &copy) { Array($0.prefix(count)) }
    }
}
