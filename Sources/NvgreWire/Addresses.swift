#if canImport(Glibc)
    import Glibc
#endif

/// An Ethernet MAC address. The six bytes are kept inline, not in an array: a data path
/// reads several per frame and must not allocate for them.
public struct MACAddress: Hashable, Sendable, CustomStringConvertible {
    /// The bytes in order, the first in bits 47..40.
    @usableFromInline var value: UInt64

    /// From six bytes (an array, a slice of a frame).
    @inlinable
    public init<Bytes: Collection>(_ bytes: Bytes) where Bytes.Element == UInt8 {
        precondition(bytes.count == 6, "a MAC address has 6 bytes")
        var v: UInt64 = 0
        for b in bytes { v = v << 8 | UInt64(b) }
        value = v
    }

    /// Parses `aa:bb:cc:dd:ee:ff` (also with `-`); nil when malformed.
    public init?(parsing text: String) {
        let parts = text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == ":" || $0 == "-" })
        guard parts.count == 6 else { return nil }
        var out: [UInt8] = []
        for p in parts {
            guard p.count == 2, let b = UInt8(p, radix: 16) else { return nil }
            out.append(b)
        }
        self.init(out)
    }

    public var bytes: [UInt8] {
        get { (0..<6).map { byte($0) } }
        set { self = MACAddress(newValue) }
    }

    /// Byte `i` (0..<6).
    @inlinable
    public func byte(_ i: Int) -> UInt8 { UInt8(truncatingIfNeeded: value >> (40 - 8 * UInt64(i))) }

    /// Writes the six bytes at the start of `raw` (6 bytes or more), allocating nothing.
    @inlinable
    public func store(into raw: UnsafeMutableRawBufferPointer) {
        for i in 0..<6 { raw[i] = byte(i) }
    }

    /// Writes the six bytes into `frame` at `offset`.
    @inlinable
    public func store(into frame: inout [UInt8], at offset: Int) {
        for i in 0..<6 { frame[offset + i] = byte(i) }
    }

    public static let broadcast = MACAddress([0xff, 0xff, 0xff, 0xff, 0xff, 0xff])
    public var isMulticast: Bool { byte(0) & 1 == 1 }
    public var isZero: Bool { value == 0 }

    public var description: String {
        bytes.map { b in
            let s = String(b, radix: 16)
            return s.count == 1 ? "0" + s : s
        }.joined(separator: ":")
    }
}

/// IP address family as it appears in the ABI (`NV_AF_INET` = 4, `NV_AF_INET6` = 6).
public enum IPFamily: UInt8, Sendable, CustomStringConvertible {
    case v4 = 4
    case v6 = 6
    public var description: String { self == .v4 ? "IPv4" : "IPv6" }
}

/// An IPv4 or IPv6 address in network byte order. The bytes are kept inline, not in an
/// array, as in MACAddress.
public struct IPAddress: Hashable, Sendable, CustomStringConvertible {
    public let family: IPFamily
    /// The bytes in order, the first in bits 127..120 of `high:low`; an IPv4 address fills
    /// the top 32 bits of `high`, the rest zero.
    @usableFromInline let high: UInt64
    @usableFromInline let low: UInt64

    /// From four bytes (an array, a slice of a frame).
    @inlinable
    public init<Bytes: Collection>(v4 bytes: Bytes) where Bytes.Element == UInt8 {
        precondition(bytes.count == 4)
        var v: UInt64 = 0
        for b in bytes { v = v << 8 | UInt64(b) }
        family = .v4
        high = v << 32
        low = 0
    }

    /// From sixteen bytes.
    @inlinable
    public init<Bytes: Collection>(v6 bytes: Bytes) where Bytes.Element == UInt8 {
        precondition(bytes.count == 16)
        var h: UInt64 = 0
        var l: UInt64 = 0
        for (i, b) in bytes.enumerated() {
            if i < 8 { h = h << 8 | UInt64(b) } else { l = l << 8 | UInt64(b) }
        }
        family = .v6
        high = h
        low = l
    }

    /// 4 or 16.
    @inlinable
    public var byteCount: Int { family == .v4 ? 4 : 16 }

    /// Byte `i` (0..<byteCount).
    @inlinable
    public func byte(_ i: Int) -> UInt8 {
        i < 8
            ? UInt8(truncatingIfNeeded: high >> (56 - 8 * UInt64(i)))
            : UInt8(truncatingIfNeeded: low >> (56 - 8 * UInt64(i - 8)))
    }

    public var bytes: [UInt8] { (0..<byteCount).map { byte($0) } }

    /// The XOR of the address's 32-bit big-endian words (what the flow hash folds in).
    @inlinable
    public var xorOfWords: UInt32 {
        UInt32(truncatingIfNeeded: high >> 32) ^ UInt32(truncatingIfNeeded: high)
            ^ UInt32(truncatingIfNeeded: low >> 32) ^ UInt32(truncatingIfNeeded: low)
    }

    /// Writes the address's bytes into `frame` at `offset`.
    @inlinable
    public func store(into frame: inout [UInt8], at offset: Int) {
        for i in 0..<byteCount { frame[offset + i] = byte(i) }
    }

    /// Parses dotted IPv4 or textual IPv6; nil when malformed.
    public init?(parsing text: String) {
        var v4 = in_addr()
        var v6 = in6_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            self.init(v4: withUnsafeBytes(of: &v4) { Array($0) })
        } else if inet_pton(AF_INET6, text, &v6) == 1 {
            self.init(v6: withUnsafeBytes(of: &v6) { Array($0) })
        } else {
            return nil
        }
    }

    /// The 16-byte form used in map keys: IPv4 fills the first four bytes.
    public var padded16: [UInt8] { bytes + [UInt8](repeating: 0, count: 16 - bytes.count) }

    /// Writes the 16-byte form at the start of `raw` (16 bytes or more), allocating nothing:
    /// a million map keys are built this way.
    @inlinable
    public func storePadded16(into raw: UnsafeMutableRawBufferPointer) {
        raw.storeBytes(of: high.bigEndian, toByteOffset: 0, as: UInt64.self)
        raw.storeBytes(of: low.bigEndian, toByteOffset: 8, as: UInt64.self)
    }

    public var isUnspecified: Bool { high == 0 && low == 0 }
    /// 224.0.0.0/4 or ff00::/8.
    public var isMulticast: Bool { family == .v4 ? byte(0) >> 4 == 0xe : byte(0) == 0xff }
    /// 127.0.0.0/8 or ::1.
    public var isLoopback: Bool { family == .v4 ? byte(0) == 127 : high == 0 && low == 1 }
    /// Whether the address can be a host's own unicast address (not unspecified, multicast,
    /// loopback or the IPv4 limited broadcast): what a provider address must be.
    public var isHostUnicast: Bool {
        !isUnspecified && !isMulticast && !isLoopback && !(family == .v4 && high >> 32 == 0xffff_ffff)
    }

    /// The address as two big-endian-ordered words (for hashing without Hasher).
    @inlinable
    public var words: (high: UInt64, low: UInt64) { (high, low) }

    public var description: String {
        var buf = [CChar](repeating: 0, count: 64)
        var raw = bytes
        let af = family == .v4 ? AF_INET : AF_INET6
        _ = raw.withUnsafeMutableBytes { inet_ntop(af, $0.baseAddress, &buf, socklen_t(buf.count)) }
        return String(cString: buf)
    }
}

extension IPAddress: ExpressibleByStringLiteral {
    /// For literals in code and tests; a malformed literal is a programming error.
    public init(stringLiteral value: String) {
        guard let a = IPAddress(parsing: value) else { preconditionFailure("bad IP literal \(value)") }
        self = a
    }
}

extension MACAddress: ExpressibleByStringLiteral {
    public init(stringLiteral value: String) {
        guard let m = MACAddress(parsing: value) else { preconditionFailure("bad MAC literal \(value)") }
        self = m
    }
}
