/// Ethernet II framing and the ethertypes the overlay uses.
public enum EtherType: UInt16, Sendable {
    case ipv4 = 0x0800
    case arp = 0x0806
    case ipv6 = 0x86dd
    case vlan = 0x8100
    case qinq = 0x88a8
    case transparentEthernet = 0x6558
}

public enum Ethernet {
    public static let headerLength = 14

    public static func header(dst: MACAddress, src: MACAddress, type: UInt16) -> [UInt8] {
        var out = dst.bytes + src.bytes
        out.appendBE16(type)
        return out
    }

    public static func frame(dst: MACAddress, src: MACAddress, type: EtherType, payload: [UInt8]) -> [UInt8] {
        header(dst: dst, src: src, type: type.rawValue) + payload
    }

    /// The same frame with an 802.1Q tag inserted after the MAC addresses.
    public static func tagged(_ frame: [UInt8], vlan: UInt16, tpid: UInt16 = EtherType.vlan.rawValue) -> [UInt8] {
        var tag: [UInt8] = []
        tag.appendBE16(tpid)
        tag.appendBE16(vlan & 0x0fff)
        return Array(frame[0..<12]) + tag + Array(frame[12...])
    }
}
