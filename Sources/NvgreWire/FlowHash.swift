/// The NVGRE FlowID (RFC 7637 section 3.1), defined in bpf/flow_hash.h and implemented here
/// a second time, independently, so tests and the userspace path agree with the kernel:
///
///     h = XOR of every 32-bit word of source and destination address
///         XOR ((sport XOR dport) << 16) XOR protocol, then the murmur3 finalizer
///     FlowID = XOR of the four bytes of h;  IPv6 outer flow label = h & 0xfffff
public struct FlowHash: Sendable, Equatable {
    public let value: UInt32

    public init(src: IPAddress, dst: IPAddress, protocol proto: UInt8, sport: UInt16 = 0, dport: UInt16 = 0) {
        var h = src.xorOfWords ^ dst.xorOfWords
        h ^= UInt32(sport ^ dport) << 16
        h ^= UInt32(proto)
        value = FlowHash.fmix32(h)
    }

    public var flowID: UInt8 {
        UInt8(truncatingIfNeeded: value ^ (value >> 8) ^ (value >> 16) ^ (value >> 24))
    }

    public var flowLabel: UInt32 { value & 0xfffff }

    static func fmix32(_ x: UInt32) -> UInt32 {
        var h = x
        h ^= h >> 16
        h = h &* 0x85eb_ca6b
        h ^= h >> 13
        h = h &* 0xc2b2_ae35
        h ^= h >> 16
        return h
    }
}
