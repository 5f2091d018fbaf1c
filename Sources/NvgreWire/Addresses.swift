#if canImport(Glibc)
    import Glibc
#endif

/// An Ethernet MAC address.
public struct MACAddress: Hashable, Sendable, CustomStringConvertible {
    public var bytes: [UInt8]

    public init(_ bytes: [UInt8]) {
        precondition(bytes.count == 6, "a MAC address has 6 bytes")
        self.bytes = bytes
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
        bytes = out
    }

    public static let broadcast = MACAddress([0xff, 0xff, 0xff, 0xff, 0xff, 0xff])
    public var isMulticast: Bool { bytes[0] & 1 == 1 }
    public var isZero: Bool { bytes.allSatisfy { $0 == 0 } }

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

/// An IPv4 or IPv6 address in network byte order.
public struct IPAddress: Hashable, Sendable, CustomStringConvertible {
    public let family: IPFamily
    public let bytes: [UInt8]

    public init(v4 bytes: [UInt8]) {
        precondition(bytes.count == 4)
        family = .v4
        self.bytes = bytes
    }

    public init(v6 bytes: [UInt8]) {
        precondition(bytes.count == 16)
        family = .v6
        self.bytes = bytes
    }

    /// Parses dotted IPv4 or textual IPv6; nil when malformed.
    public init?(parsing text: String) {
        var v4 = in_addr()
        var v6 = in6_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            family = .v4
            bytes = withUnsafeBytes(of: &v4) { Array($0) }
        } else if inet_pton(AF_INET6, text, &v6) == 1 {
            family = .v6
            bytes = withUnsafeBytes(of: &v6) { Array($0) }
        } else {
            return nil
        }
    }

    /// The 16-byte form used in map keys: IPv4 fills the first four bytes.
    public var padded16: [UInt8] { bytes + [UInt8](repeating: 0, count: 16 - bytes.count) }

    public var isUnspecified: Bool { bytes.allSatisfy { $0 == 0 } }

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
