/// An IPv4 or IPv6 prefix such as 198.19.1.0/24.
public struct IPPrefix: Hashable, Sendable, CustomStringConvertible {
    public let address: IPAddress
    public let length: Int

    public var family: IPFamily { address.family }

    public init?(address: IPAddress, length: Int) {
        guard length >= 0, length <= address.bytes.count * 8 else { return nil }
        self.address = address
        self.length = length
    }

    /// Parses `address/length`; a bare address is a host prefix. nil when malformed.
    public init?(parsing text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2, let a = IPAddress(parsing: String(parts[0])) else { return nil }
        let max = a.bytes.count * 8
        var len = max
        if parts.count == 2 {
            guard let l = Int(parts[1]), l >= 0, l <= max, !parts[1].hasPrefix("+") else { return nil }
            len = l
        }
        self.init(address: a, length: len)
    }

    /// True when no bit after the prefix length is set (198.19.1.0/24, not 198.19.1.7/24).
    public var isCanonical: Bool { masked(address) == address }

    /// The same prefix with the host bits cleared.
    public var canonical: IPPrefix { IPPrefix(address: masked(address), length: length)! }

    /// Compares the prefix bits in place (no copies: policies check millions of records).
    public func contains(_ ip: IPAddress) -> Bool {
        guard ip.family == family else { return false }
        let a = address.bytes, b = ip.bytes
        var bits = length, i = 0
        while bits >= 8 {
            if a[i] != b[i] { return false }
            bits -= 8
            i += 1
        }
        if bits == 0 { return true }
        let mask = UInt8(truncatingIfNeeded: 0xff << (8 - bits))
        return a[i] & mask == b[i] & mask
    }

    /// True when the two prefixes share any address.
    public func overlaps(_ other: IPPrefix) -> Bool {
        guard family == other.family else { return false }
        return length <= other.length ? contains(other.address) : other.contains(address)
    }

    /// The IPv4 directed broadcast of the prefix (its last address); nil for IPv6, /31, /32.
    public var broadcast: IPAddress? {
        guard family == .v4, length < 31 else { return nil }
        let host = UInt32.max >> UInt32(length)
        let net = address.bytes.reduce(UInt32(0)) { $0 << 8 | UInt32($1) } | host
        return IPAddress(v4: [
            UInt8(net >> 24), UInt8(truncatingIfNeeded: net >> 16), UInt8(truncatingIfNeeded: net >> 8),
            UInt8(truncatingIfNeeded: net)
        ])
    }

    private func masked(_ ip: IPAddress) -> IPAddress {
        var b = ip.bytes
        for i in 0..<b.count {
            let bits = max(0, min(8, length - i * 8))
            b[i] &= bits == 0 ? 0 : UInt8(truncatingIfNeeded: 0xff << (8 - bits))
        }
        return ip.family == .v4 ? IPAddress(v4: b) : IPAddress(v6: b)
    }

    public var description: String { "\(address)/\(length)" }
}
