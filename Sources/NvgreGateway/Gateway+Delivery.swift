import CNvgre
import NvgreDatapath
import NvgreWire

extension Gateway {
    /// Sends an IP packet to the VM `vm`: inner Ethernet from the subnet's router MAC to the
    /// VM's, NVGRE to the VM's host (or straight to its port when it runs here). An IPv4
    /// packet without DF that would not fit the underlay once encapsulated goes in fragments.
    func deliver(_ ip: [UInt8], to vm: IPAddress, vsid: UInt32, hash: FlowHash, _ e: ExceptionFrame) -> Bool {
        guard let record = maps.record(vsid: vsid, ca: vm), let sn = maps.subnet(vsid), let cfg = maps.hostConfig else {
            count(NV_GW_DROP_NO_RECORD, e)
            return false
        }
        let type: EtherType = vm.family == .v4 ? .ipv4 : .ipv6
        let inner = Ethernet.header(dst: record.customerMAC, src: sn.gatewayMAC, type: type.rawValue) + ip
        do {
            if record.port_ifindex != 0 {
                try sender.sendToPort(inner, ifindex: record.port_ifindex)
                return true
            }
            let pa = record.providerAddress
            guard let src = cfg.providerAddress(pa.family) else {
                onEvent(.failed("no \(pa.family) provider address to send from"))
                return false
            }
            let tos = vm.family == .v4 ? ip[1] : UInt8(truncatingIfNeeded: (UInt16(ip[0]) << 8 | UInt16(ip[1])) >> 4)
            var pieces = [ip]
            // Only an IPv4 packet without DF, larger than any underlay must carry, may need
            // cutting: the path MTU is asked for that one, not for every packet.
            let mayCut = vm.family == .v4 && ip.count > 576 && ip[6] & 0x40 == 0
            if mayCut, let mtu = sender.underlayMTU(to: pa) {
                let fits = NVGRE.customerMTU(underlayMTU: mtu, outer: pa.family)
                if ip.count > fits, let fragments = IPv4Fragmenter.fragments(of: ip, mtu: fits) { pieces = fragments }
            }
            let header = Ethernet.header(dst: record.customerMAC, src: sn.gatewayMAC, type: type.rawValue)
            for piece in pieces {
                let frame = NVGRE.encapsulate(
                    inner: header + piece, vsid: vsid, hash: hash, tos: tos,
                    outerSrcMAC: MACAddress([2, 0, 0, 0, 0, 0]),
                    outerDstMAC: MACAddress([2, 0, 0, 0, 0, 0]), srcPA: src, dstPA: pa,
                    sendFlowID: record.sendsFlowID)
                try sender.sendUnderlay(Array(frame.dropFirst(Ethernet.headerLength)), to: pa)
            }
            return true
        } catch {
            onEvent(.failed("\(error)"))
            return false
        }
    }

    /// What XDP hands up as NV_EXC_OVERSIZE (with the underlay's MTU) when a translated
    /// packet to a VM on another host does not fit the underlay once encapsulated; nil when
    /// it fits. For the packets this engine delivers itself: a flow's first ones on an XDP
    /// host, every one on the userspace path. Asked only of packets that may not fit.
    func oversize(_ ip: [UInt8], to vm: IPAddress, vsid: UInt32, _ e: ExceptionFrame) -> ExceptionFrame? {
        guard ip.count > 1280, let record = maps.record(vsid: vsid, ca: vm), record.port_ifindex == 0,
            let sn = maps.subnet(vsid), let mtu = sender.underlayMTU(to: record.providerAddress),
            ip.count > NVGRE.customerMTU(underlayMTU: mtu, outer: record.providerAddress.family)
        else { return nil }
        let type: EtherType = vm.family == .v4 ? .ipv4 : .ipv6
        let frame = Ethernet.header(dst: record.customerMAC, src: sn.gatewayMAC, type: type.rawValue) + ip
        return ExceptionFrame(
            reason: NV_EXC_OVERSIZE, ingressIfindex: e.ingressIfindex, vsid: vsid, originalLength: frame.count,
            mtu: UInt32(mtu), frame: frame)
    }
}
