import CNvgre
import NvgreWire

/// The userspace path's header work done in the frame's own array, so that forwarding a
/// frame allocates nothing when the transport hands frames over in arrays with room to
/// spare (headroom for the outer headers is capacity at the end: prepending moves the
/// bytes, which costs less than an allocation). Written apart from NVGRE.encapsulate, which
/// stays the tests' independent reference.
extension Array where Element == UInt8 {
    mutating func setBE16(_ v: UInt16, at i: Int) {
        self[i] = UInt8(truncatingIfNeeded: v >> 8)
        self[i + 1] = UInt8(truncatingIfNeeded: v)
    }

    mutating func setBE32(_ v: UInt32, at i: Int) {
        setBE16(UInt16(truncatingIfNeeded: v >> 16), at: i)
        setBE16(UInt16(truncatingIfNeeded: v), at: i + 2)
    }

    /// Puts the outer Ethernet, IP (IPv4 with DF and TTL 64, or IPv6 with hop limit 64) and
    /// GRE headers in front of the customer frame this array holds, as nv_encap does.
    mutating func prependNVGRE(
        vsid: UInt32, hash: FlowHash, tos: UInt8, sendFlowID: Bool, srcMAC: MACAddress, dstMAC: MACAddress,
        srcPA: IPAddress, dstPA: IPAddress
    ) {
        let v6 = srcPA.family == .v6
        let ip = 14
        let gre = ip + (v6 ? 40 : 20)
        let inner = count
        replaceSubrange(0..<0, with: repeatElement(0, count: gre + 8))
        dstMAC.store(into: &self, at: 0)
        srcMAC.store(into: &self, at: 6)
        if v6 {
            setBE16(0x86dd, at: 12)
            setBE32(6 << 28 | UInt32(tos) << 20 | hash.flowLabel, at: ip)
            setBE16(UInt16(8 + inner), at: ip + 4)
            self[ip + 6] = 47
            self[ip + 7] = NVGRE.outerTTL
            srcPA.store(into: &self, at: ip + 8)
            dstPA.store(into: &self, at: ip + 24)
        } else {
            setBE16(0x0800, at: 12)
            self[ip] = 0x45
            self[ip + 1] = tos
            setBE16(UInt16(20 + 8 + inner), at: ip + 2)
            setBE16(0x4000, at: ip + 6)  // DF; identification 0
            self[ip + 8] = NVGRE.outerTTL
            self[ip + 9] = 47
            srcPA.store(into: &self, at: ip + 12)
            dstPA.store(into: &self, at: ip + 16)
            var sum: UInt32 = 0
            for i in stride(from: ip, to: ip + 20, by: 2) { sum += UInt32(self[i]) << 8 | UInt32(self[i + 1]) }
            while sum > 0xffff { sum = (sum & 0xffff) + (sum >> 16) }
            setBE16(~UInt16(sum), at: ip + 10)
        }
        setBE16(NVGRE.flagsAndVersion, at: gre)
        setBE16(EtherType.transparentEthernet.rawValue, at: gre + 2)
        setBE32(vsid << 8 | UInt32(sendFlowID ? hash.flowID : 0), at: gre + 4)
    }
}
