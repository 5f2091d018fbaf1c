import Foundation
import NvgreControl
import NvgrePolicy
import Testing

/// `kill -9` of `nvgre apply` half-way through (issue 21): the instance then holds the old
/// policy or the new one whole, as `save` and the attached ports show, and the next apply
/// succeeds.
@Suite(.serialized)
struct InterruptedApplyTests {
    /// What a policy decides that `save` gives back: records, routes, subnets and ports.
    static func essence(_ p: Policy) -> [Set<String>] {
        [
            Set(p.lookupRecords.map { "\($0.vsid) \($0.customerAddress) \($0.providerAddress) \($0.mac)" }),
            Set(p.customerRoutes.map { "\($0.routingDomain) \($0.prefix) \($0.nextHop)" }),
            Set(p.subnets.map { "\($0.vsid) \($0.prefixes)" }),
            Set(p.ports.map { "\($0.interface) \($0.vsid) \($0.addresses)" })
        ]
    }

    /// The example with `records` IPv6 records in VSID 5001 on provider address `pa`; `grown`
    /// also moves 198.19.1.2 here onto port2, adds a route and a subnet.
    static func policy(records: Int, pa: String, grown: Bool) -> String {
        var text = CLIHost.example
        var lines = ""
        for i in 0..<records {
            lines +=
                "  - {vsid: 5001, customerAddress: \"2001:db8:19:1::\(String(i + 0x1000, radix: 16))\", "
                + "providerAddress: \(pa), mac: 02:00:00:01:\(String(format: "%02x:%02x", i >> 8 & 255, i & 255))}\n"
        }
        text = text.replacingOccurrences(of: "lookupRecords:\n", with: "lookupRecords:\n" + lines)
        if grown {
            text = text.replacingOccurrences(
                of: "providerAddress: 198.18.0.2, mac: 02:00:00:00:01:02",
                with: "providerAddress: 198.18.0.1, mac: 02:00:00:00:01:02")
            text = text.replacingOccurrences(
                of: "customerRoutes:\n",
                with: "customerRoutes:\n  - {routingDomain: red, prefix: 10.9.0.0/16, nextHop: 198.19.2.1}\n")
            text = text.replacingOccurrences(
                of: "subnets:\n",
                with:
                    "subnets:\n  - {vsid: 5003, routingDomain: red, prefixes: [198.19.3.0/24], gateways: [198.19.3.254], "
                    + "gatewayMAC: \"02:00:00:00:ff:04\"}\n")
            text += "  - {interface: port2, vsid: 5001, mac: 02:00:00:00:01:02, addresses: [198.19.1.2]}\n"
        }
        return text
    }

    @Test func anApplyKilledHalfWayLeavesTheOldPolicyOrTheNew() throws {
        let h = try CLIHost(tag: "killapply")
        try #require(h.run(["up", "--uplink", "ul", "--max-lookups", "65536"]).status == 0)
        let texts = [
            Self.policy(records: 4_000, pa: "198.18.0.2", grown: false),
            Self.policy(records: 5_000, pa: "198.18.0.3", grown: true)
        ]
        let expected = try texts.map { Self.essence(try PolicyDocument.decode($0)) }
        let files = try [h.file("old.yaml", texts[0]), h.file("new.yaml", texts[1])]
        let state = "\(Instance.stateRoot)/\(h.instance)", port2Link = "\(Instance.pinRoot)/\(h.instance)/link_port2"
        let journal = "\(state)/apply.journal"

        var outcomes = [0, 0], interrupted = 0
        // Rounds 0 to 2 from an empty instance (its journal says "empty these maps"), then
        // from the old policy.
        let emptyFile = try h.file("empty.yaml", "{}\n"), nothing = Self.essence(Policy())
        for round in 0..<13 {
            let from = round < 3 ? nothing : expected[0]
            let reset = h.run(["apply", round < 3 ? emptyFile : files[0]])
            try #require(reset.status == 0, "round \(round): \(reset.err)")
            try #require(Self.essence(try ConcurrentWriterTests.live(h)) == from)
            // The new policy's apply, killed 0 to 243 ms after its journal appears (its first write).
            let apply = Process()
            apply.executableURL = URL(fileURLWithPath: CLIHost.binary)
            apply.arguments = ["-n", h.ns, "--instance", h.instance, "apply", files[1]]
            apply.standardOutput = FileHandle.nullDevice
            apply.standardError = FileHandle.nullDevice
            try apply.run()
            let deadline = Date().addingTimeInterval(20)
            while access(journal, F_OK) != 0 && apply.isRunning && Date() < deadline { usleep(100) }
            usleep(UInt32(round < 3 ? round : (round - 3) * (round - 3)) * 3_000)
            kill(apply.processIdentifier, SIGKILL)
            apply.waitUntilExit()
            if access(journal, F_OK) == 0 { interrupted += 1 }

            // `save` (the next process to open the instance) finds one policy whole.
            let now = Self.essence(try ConcurrentWriterTests.live(h))
            let which = [from, expected[1]].firstIndex(of: now)
            #expect(
                which != nil,
                "round \(round): a mix: \(zip(now, expected[0]).map { $0.intersection($1).count }) of the old, \(zip(now, expected[1]).map { $0.intersection($1).count }) of the new"
            )
            if let which {
                outcomes[which] += 1
                #expect(
                    (access(port2Link, F_OK) == 0) == (which == 1), "round \(round): port2 attached does not match")
            }
            #expect(access(journal, F_OK) != 0, "round \(round): the journal is still there")
        }
        print("apply killed 13 times: \(interrupted) half-way; then old \(outcomes[0]) times, new \(outcomes[1])")
        #expect(interrupted >= 3, "only \(interrupted) kills landed half-way: the test proves little")

        let again = h.run(["apply", files[1]])
        #expect(again.status == 0, "\(again.err)")
        #expect(Self.essence(try ConcurrentWriterTests.live(h)) == expected[1])
    }
}
