import CNvgre
import NvgreDatapath
import NvgreWire

/// A flow's life: written into both maps within its domain's share, followed through TCP
/// states, offloaded to XDP once established, expired when idle, read back after a restart.
extension Gateway {
    /// Writes a new flow into both maps (nat_in first: a reply may come back at once),
    /// within its domain's share of the flow table.
    func create(_ flow: NATFlow, fromOutside: Bool, _ e: ExceptionFrame) -> NATEntry? {
        if let share = natShares[flow.rdid],
            table.count(of: flow.rdid) >= natQuota(share: share, ofCount: maps.flowCapacity)
        {
            if !fromOutside { table.ports.release(proto: flow.proto, address: flow.ext, port: flow.extPort) }
            count(NV_GW_FLOW_TABLE_FULL, e)
            countDomain(flow.rdid, NV_DOM_FLOW_SHARE_FULL, e)
            return nil
        }
        let now = clock()
        let flags: NATFlags = fromOutside ? .service : []
        let value = flow.value(flags: flags, lastSeenNanoseconds: now)
        do {
            try maps.writeFlowIn(flow.inKey, value, flags: UInt64(BPF_ANY))
            do { try maps.writeFlowOut(flow.outKey, value, flags: UInt64(BPF_ANY)) } catch {
                maps.deleteFlowIn(flow.inKey)
                throw error
            }
        } catch {
            table.ports.release(proto: flow.proto, address: flow.ext, port: flow.extPort)
            count(NV_GW_FLOW_TABLE_FULL, e)
            onEvent(.failed("flow \(Event.text(flow)) not written: \(error)"))
            return nil
        }
        let entry = NATEntry(flow: flow, flags: flags, fromOutside: fromOutside, lastSeen: now)
        table.insert(entry)
        add(NV_GW_FLOWS_CREATED, 1, 0)
        onEvent(.created(flow, service: fromOutside))
        return entry
    }

    /// Tracks how far a flow got; offloads it once established: TCP when the initiator
    /// acknowledges the responder's SYN+ACK, UDP and ICMP echo once both ways were seen.
    func observe(_ e: inout NATEntry, outbound: Bool, tcpFlags: UInt8) {
        e.lastSeen = clock()
        if outbound { e.sawOutbound = true } else { e.sawInbound = true }
        if tcpFlags & NATPacket.fin != 0 { e.flags.insert(.fin) }
        if tcpFlags & NATPacket.rst != 0 { e.flags.insert(.rst) }
        let fromInitiator = outbound != e.fromOutside
        let established: Bool
        if e.flow.proto == IPProtocol.tcp.rawValue {
            if !fromInitiator && tcpFlags & (NATPacket.syn | NATPacket.ack) == NATPacket.syn | NATPacket.ack {
                e.synAcked = true
            }
            established = fromInitiator && e.synAcked && tcpFlags & NATPacket.syn == 0
            if established { e.flags.insert(.established) }
        } else {
            established = e.sawOutbound && e.sawInbound
        }
        // A hairpin flow (its remote is one of our external addresses) stays here both ways:
        // XDP would send it out of the external interface.
        let hairpin = externalAddresses.contains { $0.address == e.flow.remote }
        if offloads && established && !e.offloaded && !e.closing && !hairpin { offload(&e) }
        table.update(e)
    }

    func offload(_ e: inout NATEntry) {
        let flags = e.flags.union(.offloaded)
        let value = e.flow.value(flags: flags, lastSeenNanoseconds: e.lastSeen)
        do {
            try maps.writeFlowIn(e.flow.inKey, value, flags: UInt64(BPF_EXIST))
            try maps.writeFlowOut(e.flow.outKey, value, flags: UInt64(BPF_EXIST))
            e.flags = flags
            add(NV_GW_FLOWS_OFFLOADED, 1, 0)
            onEvent(.offloaded(e.flow))
        } catch {
            onEvent(.failed("flow \(Event.text(e.flow)) not offloaded: \(error)"))
        }
    }

    /// Removes flows idle longer than their timeout; what XDP saw counts as activity.
    /// Returns how many expired.
    @discardableResult
    public func expire() -> Int {
        let now = clock()
        var expired = 0
        for var e in table.all {
            var last = e.lastSeen
            for v in [maps.flowOut(e.flow.outKey), maps.flowIn(e.flow.inKey)].compactMap({ $0 }) {
                last = max(last, v.last_seen_ns)
                e.flags.formUnion(v.natFlags.intersection(.closing))
            }
            let idle = Double(now &- min(last, now)) / 1e9
            if idle <= NATTable.timeout(e, timeouts) {
                table.update(e)
                continue
            }
            maps.deleteFlowOut(e.flow.outKey)
            maps.deleteFlowIn(e.flow.inKey)
            table.remove(e.flow)
            expired += 1
            onEvent(.expired(e.flow))
        }
        if expired > 0 { add(NV_GW_FLOWS_EXPIRED, UInt64(expired), 0) }
        return expired
    }

    /// Reads the flows a previous gateway process left in the maps, so that they expire
    /// and keep their ports. Returns how many it found.
    @discardableResult
    public func recover() -> Int {
        var found = 0
        for key in maps.flowOutKeys() {
            guard let v = maps.flowOut(key) else { continue }
            let flow = NATFlow(v)
            guard let back = maps.flowIn(flow.inKey) else {
                maps.deleteFlowOut(key)  // half a flow: nothing can come back to it
                continue
            }
            var e = NATEntry(
                flow: flow, flags: v.natFlags.union(back.natFlags), fromOutside: v.natFlags.contains(.service),
                lastSeen: max(v.last_seen_ns, back.last_seen_ns))
            let established = e.offloaded || e.flags.contains(.established)
            e.sawOutbound = established
            e.sawInbound = established
            e.synAcked = established
            if !e.fromOutside {
                table.ports.claim(proto: flow.proto, address: flow.ext, port: flow.extPort, for: flow.rdid)
            }
            table.insert(e)
            found += 1
        }
        return found
    }
}
