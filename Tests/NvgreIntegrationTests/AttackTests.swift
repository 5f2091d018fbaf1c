import Foundation
import NvgreLab
import NvgreWire
import Testing

/// Isolation under attack: forged frames from a Red VM and from the underlay. None reaches
/// a VM; each is counted under its own drop reason, exactly once per frame. A well-formed
/// frame sent the same way is delivered, so "nothing arrived" means something.
@Suite(.serialized)
struct AttackTests {
    static let port: UInt16 = 7000
    static let copies = 3

    /// UDP from `src` (CA and MAC as given) to Red's VM on B, as a customer frame.
    static func customerFrame(
        srcMAC: MACAddress, src: IPAddress, dstMAC: MACAddress = redB.mac, dst: IPAddress = redB.ip4,
        marker: String
    ) -> [UInt8] {
        let udp = UDP.datagram(src: src, dst: dst, sport: 40000, dport: port, payload: Array(marker.utf8))
        return Ethernet.frame(
            dst: dstMAC, src: srcMAC, type: .ipv4,
            payload: IPPacket.build(src: src, dst: dst, proto: IPProtocol.udp.rawValue, payload: udp))
    }

    /// What the listeners on B's Red and Blue VMs received while `body` ran, and the drop
    /// counters that moved on `host`.
    static func observe(_ lab: DemoLab, on host: DemoHost, _ body: () throws -> Void) throws -> (
        delivered: [String], drops: [String: Int]
    ) {
        let red = try Traffic.udpListener(in: lab.ns(redB), family: .v4, port: port)
        let blue = try Traffic.udpListener(in: lab.ns(blueB), family: .v4, port: port)
        let before = try lab.counters(host).drops
        try body()
        let delivered = (red.receive(timeout: 0.5) + blue.receive(timeout: 0.1)).map {
            String(decoding: $0, as: UTF8.self)
        }
        lab.settle(host)
        let after = try lab.counters(host).drops
        var moved: [String: Int] = [:]
        for (reason, n) in after where n != (before[reason] ?? 0) { moved[reason] = n - (before[reason] ?? 0) }
        return (delivered, moved)
    }

    @Test func forgedFramesFromARedVM() throws { try forgedFramesFromARedVM(userspace: false) }

    /// The same attacks on a host on the userspace path: its decision core drops them under
    /// the same reasons.
    @Test func forgedFramesFromARedVMOnTheUserspacePath() throws { try forgedFramesFromARedVM(userspace: true) }

    func forgedFramesFromARedVM(userspace: Bool) throws {
        let lab = try startedLab(userspace ? "usvmattack" : "vmattack", userspace: userspace ? [hostA.name] : [])
        defer { lab.stop() }
        let send = { (frame: [UInt8], vm: DemoVM) in
            try Traffic.sendFrames(Array(repeating: frame, count: Self.copies), interface: "eth0", in: lab.ns(vm))
        }
        // Control: the VM's own addresses are delivered.
        let ok = try Self.observe(lab, on: hostA) {
            try send(Self.customerFrame(srcMAC: redA.mac, src: redA.ip4, marker: "genuine"), redA)
        }
        #expect(ok.delivered == Array(repeating: "genuine", count: Self.copies))

        let attacks: [(String, DemoVM, [UInt8], String)] = [
            (
                "forged source CA", redA, Self.customerFrame(srcMAC: redA.mac, src: "198.19.1.99", marker: "forged-ca"),
                "source-ca-spoofed"
            ),
            (
                "forged source MAC", redA,
                Self.customerFrame(srcMAC: "02:00:00:00:01:99", src: redA.ip4, marker: "forged-mac"),
                "source-mac-spoofed"
            ),
            // Red's 5002 VM dressed as Blue's VM on A (Blue's MAC and CA, which Red's 5001 VM also has).
            (
                "Blue's MAC and CA from Red 5002", red2A,
                Self.customerFrame(srcMAC: blueA.mac, src: blueA.ip4, marker: "as-blue"), "source-mac-spoofed"
            ),
            (
                "Blue's CA from Red 5002", red2A,
                Self.customerFrame(srcMAC: red2A.mac, src: blueA.ip4, marker: "as-blue-ca"), "source-ca-spoofed"
            )
        ]
        for (name, vm, frame, reason) in attacks {
            let seen = try Self.observe(lab, on: hostA) { try send(frame, vm) }
            #expect(seen.delivered.isEmpty, "\(name): delivered \(seen.delivered)")
            #expect(seen.drops == [reason: Self.copies], "\(name): drops moved \(seen.drops)")
        }
    }

    @Test func forgedNVGREFromTheUnderlay() throws { try forgedNVGREFromTheUnderlay(userspace: false) }

    @Test func forgedNVGREFromTheUnderlayToTheUserspacePath() throws { try forgedNVGREFromTheUnderlay(userspace: true) }

    func forgedNVGREFromTheUnderlay(userspace: Bool) throws {
        let lab = try startedLab(userspace ? "usulattack" : "ulattack", userspace: userspace ? [hostB.name] : [])
        defer { lab.stop() }
        let bMAC = try lab.net.mac("ul", in: lab.ns(hostB)), gMAC = try lab.net.mac("ul", in: lab.ns(hostG))
        // An NVGRE frame to B built field by field, each field open to forgery.
        func nvgre(outerSrc: IPAddress = hostA.pa4, vsid: UInt32 = 5001, flags: UInt16 = 0x2000, inner: [UInt8])
            -> [UInt8]
        {
            let gre = NVGRE.greHeader(vsid: vsid, flowID: 7, flags: flags) + inner
            return Ethernet.header(dst: bMAC, src: gMAC, type: EtherType.ipv4.rawValue)
                + IPv4Header(src: outerSrc, dst: hostB.pa4, proto: IPProtocol.gre.rawValue, payloadLength: gre.count)
                .bytes + gre
        }
        let inner = { (m: String) in Self.customerFrame(srcMAC: redA.mac, src: redA.ip4, marker: m) }
        let send = { (frame: [UInt8]) in
            try Traffic.sendFrames(Array(repeating: frame, count: Self.copies), interface: "ul", in: lab.ns(hostG))
        }
        let ok = try Self.observe(lab, on: hostB) { try send(nvgre(inner: inner("genuine"))) }
        #expect(ok.delivered == Array(repeating: "genuine", count: Self.copies))

        let attacks: [(String, [UInt8], String)] = [
            ("wrong outer source PA", nvgre(outerSrc: hostG.pa4, inner: inner("wrong-pa")), "provider-address-spoofed"),
            ("reserved VSID 4095", nvgre(vsid: 4095, inner: inner("vsid-4095")), "vsid-reserved"),
            ("reserved VSID 0xFFFFFF", nvgre(vsid: 0xFF_FFFF, inner: inner("vsid-ffffff")), "vsid-reserved"),
            ("unknown VSID", nvgre(vsid: 7001, inner: inner("vsid-7001")), "vsid-unknown"),
            ("GRE checksum bit", nvgre(flags: 0xA000, inner: inner("gre-c")), "gre-flags"),
            ("GRE version 1", nvgre(flags: 0x2001, inner: inner("gre-v1")), "gre-flags"),
            ("tagged inner frame", nvgre(inner: Ethernet.tagged(inner("tagged"), vlan: 5)), "inner-vlan-tag"),
            (
                "Red's frame in Blue's VSID from Red's PA",
                nvgre(
                    vsid: 6001,
                    inner: Self.customerFrame(
                        srcMAC: redA.mac, src: "198.19.1.77", dstMAC: blueB.mac, dst: blueB.ip4, marker: "cross")),
                "inner-source-unknown"
            )
        ]
        for (name, frame, reason) in attacks {
            let seen = try Self.observe(lab, on: hostB) { try send(frame) }
            #expect(seen.delivered.isEmpty, "\(name): delivered \(seen.delivered)")
            #expect(seen.drops == [reason: Self.copies], "\(name): drops moved \(seen.drops)")
        }
    }
}
