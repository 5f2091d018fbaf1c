import Foundation
import NvgreWire
import Testing

@testable import NvgrePolicy

struct DocumentTests {
    static let example: String = {
        let here = URL(fileURLWithPath: #filePath)
        let file = here.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("examples/two-tenants.yaml")
        return try! String(contentsOf: file, encoding: .utf8)
    }()

    @Test func theExampleFileIsTheTwoTenantPolicy() throws {
        #expect(try PolicyDocument.decode(Self.example) == twoTenants())
    }

    @Test func jsonIsAccepted() throws {
        let json =
            #"{"routingDomains": [{"id": 1, "name": "red"}], "subnets": [{"vsid": 5001, "routingDomain": "red", "#
            + #""prefixes": ["198.19.1.0/24"], "gatewayMAC": "12:34:56:00:01:02"}]}"#
        let p = try PolicyDocument.decode(json)
        #expect(p.subnets.first?.gatewayMAC == "12:34:56:00:01:02")
    }

    /// VSIDs are often written as GRE keys are, in hex; booleans are true or false only.
    @Test func hexNumbersAndBooleans() throws {
        let yaml =
            "routingDomains: [{id: 1, name: red}]\n"
            + "subnets: [{vsid: 0x123456, routingDomain: red, prefixes: [198.19.1.0/24], gatewayMAC: 02:00:00:00:ff:01, "
            + "flood: false}]\n"
        let s = try PolicyDocument.decode(yaml).subnets.first
        #expect(s?.vsid == 0x12_3456 && s?.flood == false)
        #expect(throws: PolicyErrors.self) {
            try PolicyDocument.decode(yaml.replacingOccurrences(of: "false", with: "no"))
        }
        do {
            _ = try PolicyDocument.decode(yaml.replacingOccurrences(of: "false", with: "no"))
        } catch let e as PolicyErrors {
            #expect(e.errors.map(\.field) == ["subnets[0].flood"] && "\(e)".contains("true or false"), "\(e)")
        }
    }

    @Test func macsAreNeverReadAsBase60Numbers() throws {
        let yaml =
            "routingDomains: [{id: 1, name: red}]\n"
            + "subnets: [{vsid: 5001, routingDomain: red, prefixes: [198.19.1.0/24], gatewayMAC: 12:34:56:00:01:02}]\n"
        #expect(try PolicyDocument.decode(yaml).subnets.first?.gatewayMAC == "12:34:56:00:01:02")
    }

    @Test(arguments: [
        ("unknown top-level key", "routingDomain: []", "routingDomain", "a known key"),
        (
            "unknown nested key", "routingDomains: [{id: 1, name: red, colour: blue}]", "routingDomains[0].colour",
            "a known key"
        ),
        ("missing required key", "routingDomains: [{id: 1}]", "routingDomains[0].name", "required"),
        ("id not a number", "routingDomains: [{id: one, name: red}]", "routingDomains[0].id", "whole number"),
        ("id zero", "routingDomains: [{id: 0, name: red}]", "routingDomains[0].id", "from 1"),
        ("list expected", "subnets: {vsid: 5001}", "subnets", "a list"),
        (
            "bad prefix",
            "subnets: [{vsid: 5001, routingDomain: red, prefixes: [198.19.1.0/33], gatewayMAC: 02:00:00:00:ff:01}]",
            "subnets[0].prefixes[0]", "a prefix"
        ),
        ("bad MAC", "ports: [{interface: p1, vsid: 5001, mac: 02:00:00:00:zz:01}]", "ports[0].mac", "a MAC address"),
        (
            "bad address", "providerAddresses: [{address: 198.18.0.300, interface: ul}]",
            "providerAddresses[0].address", "an IPv4 address"
        ),
        (
            "bad record type",
            "lookupRecords: [{vsid: 5001, customerAddress: 198.19.1.1, providerAddress: 198.18.0.1, "
                + "mac: 02:00:00:00:01:01, type: dynamic}]",
            "lookupRecords[0].type", "static, l2-only, gateway"
        ),
        ("not YAML", "routingDomains: [", "file", "parser"),
        (
            "validation after decoding",
            "routingDomains: [{id: 1, name: red}]\n"
                + "subnets: [{vsid: 10, routingDomain: red, prefixes: [198.19.1.0/24], gatewayMAC: 02:00:00:00:ff:01}]",
            "subnets[0].vsid", "4096 to 16777214"
        )
    ])
    func badInputNamesTheField(_ name: String, _ text: String, _ field: String, _ allowed: String) {
        do {
            _ = try PolicyDocument.decode(text)
            Issue.record("\(name): accepted")
        } catch let e as PolicyErrors {
            #expect(e.errors.contains { $0.field == field && $0.allowed.contains(allowed) }, "\(name): \(e)")
        } catch {
            Issue.record("\(name): \(error)")
        }
    }
}

/// `save` writes what `apply` reads, YAML and JSON both through the one-record-per-line
/// reader (the rest through the general parser); both give back the same policy.
struct WriterTests {
    @Test(arguments: PolicyFormat.allCases)
    func writtenPoliciesReadBackTheSame(_ format: PolicyFormat) throws {
        var p = twoTenants()
        p.lookupRecords.append(
            LookupRecord(
                vsid: 5001, customerAddress: "2001:db8:19:1::7", providerAddress: "2001:db8:18::2",
                mac: "02:00:00:00:01:07", type: .l2Only))
        p.routingDomains[1].name = "blue team \"b\""  // needs quoting
        p.subnets[1].flood = false
        p.ports[0].allowRouterAdvertisements = true
        p.ports[0].allowDHCPServer = true
        p.foreignEndpoints = [
            ForeignEndpoint(address: "198.18.0.9", name: "ovs-1", flowID: false),
            ForeignEndpoint(address: "198.18.0.10")
        ]
        for i in p.subnets.indices where p.subnets[i].routingDomain == "blue" {
            p.subnets[i].routingDomain = "blue team \"b\""
        }
        let text = PolicyWriter.write(p, as: format, header: "a header\nof two lines")
        #expect(try PolicyDocument.decode(text) == p)
    }

    @Test func bothReadersGiveTheSameRecords() throws {
        var p = twoTenants()
        for i in 0..<200 {
            p.lookupRecords.append(
                LookupRecord(
                    vsid: 5002, customerAddress: IPAddress(v4: [198, 19, 2, UInt8(i + 1)]),
                    providerAddress: IPAddress(v4: [198, 18, 1, UInt8(i % 250 + 1)]),
                    mac: MACAddress([2, 0, 0, 2, 0, UInt8(i)]), type: i % 3 == 0 ? .gateway : .staticRecord))
        }
        let yaml = PolicyWriter.write(p, as: .yaml), json = PolicyWriter.write(p, as: .json)
        #expect(try PolicyDocument.decode(yaml) == PolicyDocument.decode(json))
        #expect(try PolicyDocument.decode(json) == p)
        // Both went through the one-record-per-line reader.
        #expect(RecordLines.split(Array(yaml.utf8))?.records.count == p.lookupRecords.count)
        #expect(RecordLines.split(Array(json.utf8))?.records.count == p.lookupRecords.count)
    }

    @Test(arguments: [
        // JSON lines the fast reader does not take go to the general parser, which names them.
        (
            #"    {"vsid": 5001, "customerAddress": "198.19.1.1", "providerAddress": "198.18.0.1", "mac": "02:00:00:00:zz:01"}"#,
            "lookupRecords[0].mac", "a MAC address"
        ),
        (
            #"    {"vsid": 5001, "customerAddress": "198.19.1.1", "providerAddress": "198.18.0.1", "mac": "02:00:00:00:01:01", "colour": "red"}"#,
            "lookupRecords[0].colour", "a known key"
        ),
        (
            #"    {"vsid": 5001, "customerAddress": "198.19.1.1", "providerAddress": "198.18.0.1"}"#,
            "lookupRecords[0].mac", "required"
        )
    ])
    func jsonRecordLinesWithProblemsAreNamed(_ line: String, _ field: String, _ allowed: String) {
        expectNamed("{\n  \"lookupRecords\": [\n" + line + "\n  ]\n}\n", field, allowed)
    }

    /// The document is refused with an error naming `field` and saying what is `allowed`.
    func expectNamed(_ text: String, _ field: String, _ allowed: String) {
        do {
            _ = try PolicyDocument.decode(text, validate: false)
            Issue.record("accepted: \(text)")
        } catch let e as PolicyErrors {
            #expect(e.errors.contains { $0.field == field && $0.allowed.contains(allowed) }, "got \(e)")
        } catch {
            Issue.record("unexpected \(error)")
        }
    }

    @Test func jsonRecordsWithAMissingCommaAreRefusedByTheParser() {
        let record =
            #"    {"vsid": 5001, "customerAddress": "198.19.1.1", "providerAddress": "198.18.0.1", "mac": "02:00:00:00:01:01"}"#
        let text = "{\n  \"lookupRecords\": [\n" + record + "\n" + record + "\n  ]\n}\n"
        #expect(RecordLines.split(Array(text.utf8)) == nil)
        #expect(throws: PolicyErrors.self) { try PolicyDocument.decode(text, validate: false) }
    }

    @Test(arguments: [
        // Lines the fast reader does not take go to the YAML parser, which names the problem.
        (
            "  - {vsid: 5001, customerAddress: 198.19.1.1, providerAddress: 198.18.0.1, mac: 02:00:00:00:zz:01}",
            "lookupRecords[0].mac", "a MAC address"
        ),
        (
            "  - {vsid: 5001, customerAddress: 198.19.1.1, providerAddress: 198.18.0.1, mac: 02:00:00:00:01:01, "
                + "colour: red}",
            "lookupRecords[0].colour", "a known key"
        ),
        (
            "  - {vsid: 5001, customerAddress: 198.19.1.1, providerAddress: 198.18.0.1}", "lookupRecords[0].mac",
            "required"
        ),
        (
            "  - {vsid: 5001, customerAddress: 198.19.1.01, providerAddress: 198.18.0.1, mac: 02:00:00:00:01:01}",
            "lookupRecords[0].customerAddress", "an IPv4 address"
        ),
        (
            "  - {vsid: 50o1, customerAddress: 198.19.1.1, providerAddress: 198.18.0.1, mac: 02:00:00:00:01:01}",
            "lookupRecords[0].vsid", "a VSID from 4096 to 16777214"
        )
    ])
    func recordLinesWithProblemsAreNamed(_ line: String, _ field: String, _ allowed: String) {
        expectNamed("lookupRecords:\n" + line + "\n", field, allowed)
    }
}
