import Foundation
import NvgreLab
import Testing

/// One bad input: the arguments (a policy file's text goes in `file`, its path replaces
/// FILE), the exit code, and what the message must say (field, value, what is allowed).
struct BadInput: Sendable, CustomTestStringConvertible {
    let name: String
    let args: [String]
    let file: String?
    let status: Int32
    let says: [String]
    let instance: String?

    init(
        _ name: String, _ args: [String], file: String? = nil, instance: String? = nil, status: Int32 = 2,
        _ says: [String]
    ) {
        (self.name, self.args, self.file, self.instance, self.status, self.says) = (
            name, args, file, instance, status, says
        )
    }

    var testDescription: String { name }
}

let record = ["--pa", "198.18.0.2", "--mac", "02:00:00:00:01:09"]
let gwMAC = ["--gateway-mac", "02:00:00:00:ff:09"]

/// A policy file: localPolicy with one line replaced.
func policyWith(_ old: String, _ new: String) -> String {
    precondition(localPolicy.contains(old), "no \(old) in the policy")
    return localPolicy.replacingOccurrences(of: old, with: new)
}

let badInputs: [BadInput] = [
    // lookup add / del
    BadInput("reserved VSID", ["lookup", "add", "100", "198.19.1.9"] + record, ["vsid: 100", "4096 to 16777214"]),
    BadInput(
        "vendor VSID", ["lookup", "add", "16777215", "198.19.1.9"] + record, ["vsid: 16777215", "vendor-specific"]),
    BadInput("VSID not a number", ["lookup", "add", "red", "198.19.1.9"] + record, ["vsid: red", "4096 to 16777214"]),
    BadInput(
        "malformed CA", ["lookup", "add", "5001", "198.19.1.300"] + record, ["ca: 198.19.1.300", "an IPv4 address"]),
    BadInput(
        "malformed PA", ["lookup", "add", "5001", "198.19.1.9", "--pa", "198.18.0.x", "--mac", "02:00:00:00:01:09"],
        ["--pa: 198.18.0.x", "an IPv4 address"]),
    BadInput(
        "malformed MAC", ["lookup", "add", "5001", "198.19.1.9", "--pa", "198.18.0.2", "--mac", "02:00:00:00:zz:09"],
        ["--mac: 02:00:00:00:zz:09", "a MAC address"]),
    BadInput(
        "multicast MAC", ["lookup", "add", "5001", "198.19.1.9", "--pa", "198.18.0.2", "--mac", "01:00:5e:00:00:09"],
        ["lookup.mac: 01:00:5e:00:00:09", "unicast"]),
    BadInput(
        "CA outside the subnet", ["lookup", "add", "5001", "198.19.7.9"] + record,
        ["lookup.customerAddress: 198.19.7.9", "inside subnet 5001"]),
    BadInput(
        "IPv6 CA in an IPv4 subnet", ["lookup", "add", "5001", "2001:db8:19:1::9"] + record,
        ["lookup.customerAddress: 2001:db8:19:1::9", "inside subnet 5001"]),
    BadInput(
        "record in a missing subnet", ["lookup", "add", "7000", "198.19.1.9"] + record,
        ["lookup.vsid: 7000", "the VSID of a subnet"]),
    BadInput(
        "unknown record type", ["lookup", "add", "5001", "198.19.1.9", "--type", "dynamic"] + record,
        ["--type: dynamic", "static, l2-only or gateway"]),
    BadInput(
        "record exists", ["lookup", "add", "5001", "198.19.1.2"] + record, status: 1,
        ["198.19.1.2 in VSID 5001 exists already"]),
    BadInput(
        "deleting a missing record", ["lookup", "del", "5001", "198.19.1.99"], status: 1,
        ["no lookup record for 198.19.1.99"]),
    BadInput(
        "deleting a port's record", ["lookup", "del", "5001", "198.19.1.1"], status: 1,
        ["belongs to the VM on port port1"]),
    // subnets, domains, routes, provider addresses, ports
    BadInput(
        "subnet exists", ["subnet", "add", "5001", "--domain", "red", "--prefix", "198.19.9.0/24"] + gwMAC,
        ["vsid: 5001", "no subnet yet"]),
    BadInput(
        "subnet in an unknown domain",
        ["subnet", "add", "5003", "--domain", "green", "--prefix", "198.19.3.0/24"] + gwMAC,
        ["subnets[2].routingDomain: green", "routing domain"]),
    BadInput(
        "prefix with host bits", ["subnet", "add", "5003", "--domain", "red", "--prefix", "198.19.3.7/24"] + gwMAC,
        ["198.19.3.7/24", "such as 198.19.3.0/24"]),
    BadInput(
        "overlapping subnets", ["subnet", "add", "5003", "--domain", "red", "--prefix", "198.19.1.128/25"] + gwMAC,
        ["198.19.1.128/25", "do not overlap"]),
    BadInput(
        "malformed prefix", ["subnet", "add", "5003", "--domain", "red", "--prefix", "198.19.3.0/33"] + gwMAC,
        ["--prefix: 198.19.3.0/33", "a prefix such as"]),
    BadInput(
        "broadcast gateway MAC",
        ["subnet", "add", "5003", "--domain", "red", "--prefix", "198.19.3.0/24", "--gateway-mac", "ff:ff:ff:ff:ff:ff"],
        ["gatewayMAC: ff:ff:ff:ff:ff:ff", "unicast"]),
    BadInput("deleting a subnet with ports", ["subnet", "del", "5001"], ["vsid: 5001", "without ports"]),
    BadInput("domain exists", ["domain", "add", "red", "--id", "7"], ["name: red", "not used yet"]),
    BadInput("domain id zero", ["domain", "add", "green", "--id", "0"], ["--id: 0", "from 1 to 4294967295"]),
    BadInput("deleting a domain with subnets", ["domain", "del", "red"], ["name: red", "without subnets"]),
    BadInput(
        "route next hop of the other family", ["route", "add", "10.0.0.0/8", "--domain", "red", "--via", "2001:db8::1"],
        ["nextHop: 2001:db8::1", "an IPv4 address, like the prefix"]),
    BadInput(
        "route metric out of range",
        ["route", "add", "10.0.0.0/8", "--domain", "red", "--via", "198.19.1.250", "--metric=-1"],
        ["--metric: -1", "whole number"]),
    BadInput(
        "route in an unknown domain", ["route", "add", "10.0.0.0/8", "--domain", "green", "--via", "198.19.1.250"],
        ["routingDomain: green", "routing domain"]),
    BadInput("provider address twice", ["pa", "add", "198.18.0.1"], ["address: 198.18.0.1", "not added yet"]),
    BadInput("unspecified provider address", ["pa", "add", "0.0.0.0"], ["0.0.0.0", "unicast address of this host"]),
    BadInput(
        "port on a missing interface", ["port", "add", "port9", "--vsid", "5001", "--mac", "02:00:00:00:01:09"],
        ["ports[2].interface: port9", "an existing interface"]),
    BadInput(
        "port address without its record",
        ["port", "add", "port3", "--vsid", "5001", "--mac", "02:00:00:00:01:03", "--ca", "198.19.1.77"],
        ["ports[2].addresses[0]: 198.19.1.77", "lookup record"]),
    BadInput(
        "port MAC unlike its record",
        ["port", "add", "port3", "--vsid", "5001", "--mac", "02:00:00:00:01:09", "--ca", "198.19.1.3"],
        ["ports[2].mac: 02:00:00:00:01:09", "the MAC of the VM's lookup record"]),
    BadInput(
        "port twice", ["port", "add", "port1", "--vsid", "5001", "--mac", "02:00:00:00:01:01"],
        ["interface: port1", "not a port yet"]),
    // other commands and options
    BadInput("unknown show kind", ["show", "everything"], ["kind: everything", "interfaces, domains"]),
    BadInput("watch interval zero", ["stats", "--watch", "0"], ["--watch: 0", "from 1 to 3600"]),
    BadInput(
        "trace protocol", ["trace", "--port", "port1", "--dst", "198.19.1.2", "--proto", "sctp"],
        ["--proto: sctp", "icmp, tcp, udp, arp, nd"]),
    BadInput("trace without an entry", ["trace", "--dst", "198.19.1.2"], ["--port/--uplink", "exactly one of"]),
    BadInput(
        "trace from a non-port", ["trace", "--port", "ul", "--dst", "198.19.1.2"],
        ["--port: ul", "a port of the policy"]),
    BadInput(
        "ARP for an IPv6 address", ["trace", "--port", "port1", "--dst", "2001:db8::1", "--proto", "arp"],
        ["--dst: 2001:db8::1", "an IPv4 address (ARP)"]),
    BadInput("save format", ["save", "--format", "xml"], ["--format: xml", "yaml or json"]),
    BadInput("instance name", ["show"], instance: "a/b", ["--instance: a/b", "letters, digits"]),
    BadInput("up twice", ["up", "--uplink", "ul"], status: 1, ["already running", "nvgre down"]),
    BadInput(
        "up on a missing uplink", ["up", "--uplink", "eth9"], instance: "nvgre-cli-other",
        ["--uplink: eth9", "an existing interface"]),
    BadInput(
        "up with a bad XDP mode", ["up", "--uplink", "ul", "--xdp-mode", "offload"], instance: "nvgre-cli-other",
        ["--xdp-mode: offload", "auto, native or generic"]),
    BadInput(
        "up with an exception rate that is no number", ["up", "--uplink", "ul", "--exception-rate", "fast"],
        instance: "nvgre-cli-other", ["--exception-rate: fast", "a whole number from 0"]),
    BadInput(
        "up with a zero exception burst", ["up", "--uplink", "ul", "--port-exception-burst", "0"],
        instance: "nvgre-cli-other", ["--port-exception-burst: 0", "a whole number from 1"]),
    BadInput(
        "apply a missing file", ["apply", "/nonexistent/policy.yaml"],
        ["file: /nonexistent/policy.yaml", "a readable policy file"]),
    // policy files: nothing is applied when any line is wrong
    BadInput(
        "unknown top-level key", ["apply", "FILE"], file: localPolicy + "tenants: []\n", ["tenants", "a known key"]),
    BadInput(
        "unknown key in a record", ["apply", "FILE"],
        file: policyWith("mac: 02:00:00:00:01:03}", "mac: 02:00:00:00:01:03, colour: red}"),
        ["lookupRecords[2].colour", "a known key"]),
    BadInput(
        "VSID out of range in a file", ["apply", "FILE"],
        file: policyWith("{vsid: 6001, routingDomain", "{vsid: 4095, routingDomain"),
        ["subnets[1].vsid: 4095", "4096 to 16777214"]),
    BadInput(
        "malformed MAC in a file", ["apply", "FILE"],
        file: policyWith("mac: 02:00:00:00:01:03}", "mac: 02:00:00:00:01}"),
        ["lookupRecords[2].mac: 02:00:00:00:01", "a MAC address"]),
    BadInput(
        "malformed address in a file", ["apply", "FILE"],
        file: policyWith("customerAddress: 198.19.1.3,", "customerAddress: 198.19.1.333,"),
        ["lookupRecords[2].customerAddress: 198.19.1.333", "an IPv4 address"]),
    BadInput(
        "duplicate CA in a VSID", ["apply", "FILE"],
        file: policyWith("customerAddress: 198.19.1.3,", "customerAddress: 198.19.1.2,"),
        ["lookupRecords[2].customerAddress: 198.19.1.2", "one lookup record per VSID"]),
    BadInput(
        "record in a missing subnet (file)", ["apply", "FILE"],
        file: policyWith("{vsid: 6001, customerAddress", "{vsid: 6002, customerAddress"),
        ["lookupRecords[3].vsid: 6002", "the VSID of a subnet"]),
    BadInput(
        "mixed families in a subnet", ["apply", "FILE"],
        file: policyWith(
            "gateways: [198.19.1.254], gatewayMAC: 02:00:00:00:ff:03",
            "gateways: [\"2001:db8::fe\"], gatewayMAC: 02:00:00:00:ff:03"),
        ["subnets[1].gateways[0]: 2001:db8::fe", "inside one of the subnet's prefixes"]),
    BadInput(
        "provider address on another interface", ["apply", "FILE"],
        file: policyWith("{address: 198.18.0.1, interface: ul}", "{address: 198.18.0.1, interface: port1}"),
        ["providerAddresses[0].interface: port1", "the instance's uplink ul"]),
    BadInput("not YAML", ["apply", "FILE"], file: "subnets: [\n", ["file", "YAML or JSON"]),
    BadInput(
        "JSON with a bad prefix", ["apply", "FILE"],
        file:
            #"{"subnets": [{"vsid": 5001, "routingDomain": "red", "prefixes": ["198.19.1.0/40"], "#
            + #""gatewayMAC": "02:00:00:00:ff:01"}]}"#,
        ["subnets[0].prefixes[0]: 198.19.1.0/40", "a prefix such as"]),
    BadInput("a list expected", ["apply", "FILE"], file: "ports: {interface: port1}\n", ["ports", "a list"]),
    BadInput(
        "infrastructure prefix with host bits", ["apply", "FILE"],
        file: localPolicy + "infrastructurePrefixes:\n  - {prefix: 203.0.113.7/26, name: monitoring}\n",
        ["infrastructurePrefixes[0].prefix: 203.0.113.7/26", "without host bits (203.0.113.0/26)"]),
    BadInput(
        "infrastructure prefix malformed", ["apply", "FILE"],
        file: localPolicy + "infrastructurePrefixes:\n  - {prefix: monitoring}\n",
        ["infrastructurePrefixes[0].prefix: monitoring", "a prefix such as"]),
    BadInput(
        "NAT share over 100", ["apply", "FILE"],
        file: localPolicy + "gatewayDomains:\n  - {routingDomain: red, natShare: 150}\n",
        ["gatewayDomains[0].natShare: 150", "from 1 to 100"]),
    BadInput(
        "foreign endpoint flowID not a boolean", ["apply", "FILE"],
        file: localPolicy + "foreignEndpoints:\n  - {address: 198.18.0.9, flowID: sometimes}\n",
        ["foreignEndpoints[0].flowID: sometimes", "true or false"]),
    BadInput(
        "this host named as a foreign endpoint", ["apply", "FILE"],
        file: localPolicy + "foreignEndpoints:\n  - {address: 198.18.0.1}\n",
        ["foreignEndpoints[0].address: 198.18.0.1", "another host"]),
    BadInput(
        "up with a flood rate that is no number", ["up", "--uplink", "ul", "--flood-rate", "lots"],
        instance: "nvgre-cli-other", ["--flood-rate: lots", "a whole number from 0"]),
    BadInput(
        "VSID in hex out of range",
        ["subnet", "add", "0xFFFFFF", "--domain", "red", "--gateway-mac", "02:00:00:00:ff:09"],
        ["vsid: 0xFFFFFF", "hex with 0x"]),
    // provider addresses a host cannot have, the router's address and MAC claimed by a VM,
    // VSIDs past 32 bits (issue 21)
    BadInput(
        "multicast PA", ["lookup", "add", "5001", "198.19.1.9", "--pa", "224.0.0.1", "--mac", "02:00:00:00:01:09"],
        ["lookup.providerAddress: 224.0.0.1", "a unicast provider address"]),
    BadInput(
        "IPv6 multicast PA", ["lookup", "add", "5001", "198.19.1.9", "--pa", "ff02::1", "--mac", "02:00:00:00:01:09"],
        ["lookup.providerAddress: ff02::1", "not unspecified, multicast"]),
    BadInput(
        "loopback PA", ["lookup", "add", "5001", "198.19.1.9", "--pa", "127.0.0.1", "--mac", "02:00:00:00:01:09"],
        ["lookup.providerAddress: 127.0.0.1", "loopback"]),
    BadInput(
        "broadcast PA",
        ["lookup", "add", "5001", "198.19.1.9", "--pa", "255.255.255.255", "--mac", "02:00:00:00:01:09"],
        ["lookup.providerAddress: 255.255.255.255", "broadcast"]),
    BadInput(
        "multicast PA in a file", ["apply", "FILE"],
        file: policyWith(
            "providerAddress: 198.18.0.2, mac: 02:00:00:00:01:03", "providerAddress: 224.0.0.1, mac: 02:00:00:00:01:03"),
        ["lookupRecords[2].providerAddress: 224.0.0.1", "a unicast provider address"]),
    BadInput(
        "this host's PA multicast", ["apply", "FILE"],
        file: policyWith("{address: 198.18.0.1, interface: ul}", "{address: 239.1.1.1, interface: ul}"),
        ["providerAddresses[0].address: 239.1.1.1", "a unicast address of this host"]),
    BadInput(
        "record for the subnet's gateway address", ["lookup", "add", "5001", "198.19.1.254"] + record,
        ["lookup.customerAddress: 198.19.1.254", "gateway address"]),
    BadInput(
        "record for the gateway address in a file", ["apply", "FILE"],
        file: policyWith("customerAddress: 198.19.1.3,", "customerAddress: 198.19.1.254,"),
        ["lookupRecords[2].customerAddress: 198.19.1.254", "gateway address"]),
    BadInput(
        "record with the gateway MAC",
        ["lookup", "add", "5001", "198.19.1.9", "--pa", "198.18.0.2", "--mac", "02:00:00:00:ff:01"],
        ["lookup.mac: 02:00:00:00:ff:01", "gateway MAC"]),
    BadInput(
        "gateway MAC equal to a VM's", ["apply", "FILE"],
        file: policyWith("gatewayMAC: 02:00:00:00:ff:01}", "gatewayMAC: 02:00:00:00:01:03}"),
        ["lookupRecords[2].mac: 02:00:00:00:01:03", "gateway MAC"]),
    BadInput(
        "port with the gateway MAC", ["apply", "FILE"],
        file: policyWith(
            "{interface: port2, vsid: 5001, mac: 02:00:00:00:01:02",
            "{interface: port2, vsid: 5001, mac: 02:00:00:00:ff:01"),
        ["ports[1].mac: 02:00:00:00:ff:01", "gateway MAC"]),
    BadInput(
        "VSID past 32 bits in a file", ["apply", "FILE"],
        file: policyWith("{vsid: 6001, routingDomain", "{vsid: 99999999999, routingDomain"),
        ["subnets[1].vsid: 99999999999", "a VSID from 4096 to 16777214"]),
    BadInput(
        "record VSID past 32 bits in a file", ["apply", "FILE"],
        file: policyWith("{vsid: 6001, customerAddress", "{vsid: 0x1FFFFFFFF, customerAddress"),
        ["lookupRecords[3].vsid: 0x1FFFFFFFF", "a VSID from 4096 to 16777214"]),
    // more arguments of every object command
    BadInput(
        "malformed IPv6 PA",
        ["lookup", "add", "5001", "198.19.1.9", "--pa", "2001:db8::zz", "--mac", "02:00:00:00:01:09"],
        ["--pa: 2001:db8::zz", "an IPv6 address"]),
    BadInput(
        "deleting with a malformed CA", ["lookup", "del", "5001", "198.19.1"], ["ca: 198.19.1", "an IPv4 address"]),
    BadInput("deleting in a reserved VSID", ["lookup", "del", "10", "198.19.1.1"], ["vsid: 10", "4096 to 16777214"]),
    BadInput(
        "subnet gateway outside its prefix",
        ["subnet", "add", "5003", "--domain", "red", "--prefix", "198.19.3.0/24", "--gateway", "198.19.4.1"] + gwMAC,
        ["gateways[0]: 198.19.4.1", "inside one of the subnet's prefixes"]),
    BadInput(
        "multicast gateway MAC",
        ["subnet", "add", "5003", "--domain", "red", "--prefix", "198.19.3.0/24", "--gateway-mac", "01:00:5e:00:00:01"],
        ["gatewayMAC: 01:00:5e:00:00:01", "unicast"]),
    BadInput("deleting a missing subnet", ["subnet", "del", "7777"], ["vsid: 7777", "the VSID of an existing subnet"]),
    BadInput("deleting a missing domain", ["domain", "del", "green"], ["name: green", "an existing routing domain"]),
    BadInput(
        "domain id in use", ["domain", "add", "green", "--id", "1"],
        ["routingDomains[2].id: 1", "an id no other routing domain uses"]),
    BadInput(
        "domain id too large", ["domain", "add", "green", "--id", "4294967296"],
        ["--id: 4294967296", "from 1 to 4294967295"]),
    BadInput(
        "deleting a missing route", ["route", "del", "10.0.0.0/8", "--domain", "red"],
        ["prefix: 10.0.0.0/8", "a customer route of routing domain red"]),
    BadInput(
        "route prefix malformed", ["route", "add", "10.0.0.0/99", "--domain", "red", "--via", "198.19.1.250"],
        ["prefix: 10.0.0.0/99", "a prefix such as"]),
    BadInput(
        "route next hop malformed", ["route", "add", "10.0.0.0/8", "--domain", "red", "--via", "198.19.1.2500"],
        ["--via: 198.19.1.2500", "an IPv4 address"]),
    BadInput(
        "deleting a missing provider address", ["pa", "del", "198.18.0.9"],
        ["address: 198.18.0.9", "a provider address"]),
    BadInput("multicast provider address", ["pa", "add", "224.0.0.5"], ["224.0.0.5", "unicast address of this host"]),
    BadInput(
        "port in a reserved VSID", ["port", "add", "port3", "--vsid", "12", "--mac", "02:00:00:00:01:03"],
        ["--vsid: 12", "4096 to 16777214"]),
    BadInput(
        "port MAC malformed", ["port", "add", "port3", "--vsid", "5001", "--mac", "02:00:00:00:01"],
        ["--mac: 02:00:00:00:01", "a MAC address"]),
    // operations: the metrics endpoint is checked before the agent or gateway opens anything
    BadInput("metrics without a port", ["agent", "--metrics", "127.0.0.1"], ["--metrics: 127.0.0.1", "ADDR:PORT"]),
    BadInput(
        "metrics on a malformed address", ["gateway", "--metrics", "127.0.0.300:9417"],
        ["--metrics: 127.0.0.300:9417", "ADDR:PORT"]),
    BadInput(
        "metrics on port 0", ["agent", "--metrics", "[::1]:0"], ["--metrics: [::1]:0", "a port from 1 to 65535"]),
    BadInput(
        "too many per-VSID series", ["agent", "--metrics", "127.0.0.1:9417", "--metrics-vsids", "200000"],
        ["--metrics-vsids: 200000", "from 0 to 100000"]),
    BadInput(
        "log level", ["gateway", "--log-level", "loud"], ["--log-level: loud", "trace, debug, info, notice, warning"]),
    BadInput("deleting a missing port", ["port", "del", "port9"], ["interface: port9", "an existing port"]),
    BadInput(
        "port address of a VM on another host",
        ["port", "add", "port3", "--vsid", "5001", "--mac", "02:00:00:00:01:03", "--ca", "198.19.1.3"],
        ["ports[2]", "198.18.0.2"]),
    BadInput(
        "service protocol", ["service", "add", "sctp", "203.0.113.1:80", "--domain", "red", "--to", "198.19.1.1:80"],
        ["protocol: sctp", "tcp or udp"]),
    BadInput(
        "service external without a port",
        ["service", "add", "tcp", "203.0.113.1", "--domain", "red", "--to", "198.19.1.1:80"],
        ["external: 203.0.113.1", "an IPv4 address and a port"]),
    // other commands
    BadInput("watch count zero", ["stats", "--watch", "1", "--count", "0"], ["--count: 0", "a whole number from 1"]),
    BadInput("watch interval not a number", ["stats", "--watch", "soon"], ["--watch: soon", "from 1 to 3600"]),
    BadInput(
        "trace destination port out of range",
        ["trace", "--port", "port1", "--dst", "198.19.1.2", "--proto", "tcp", "--dport", "70000"],
        ["--dport: 70000", "from 1 to 65535"]),
    BadInput(
        "trace VSID without --uplink", ["trace", "--uplink", "--dst", "198.19.1.2", "--vsid", "12"],
        ["--vsid: 12", "4096 to 16777214"]),
    BadInput(
        "save to a missing folder", ["save", "-o", "/nonexistent/policy.yaml"],
        ["--output: /nonexistent/policy.yaml", "a path where a file can be written"]),
    BadInput(
        "up with max lookups zero", ["up", "--uplink", "ul", "--max-lookups", "0"], instance: "nvgre-cli-other",
        ["--max-lookups: 0", "a whole number from 1"]),
    BadInput(
        "up with an unknown datapath", ["up", "--uplink", "ul", "--datapath", "dpdk"], instance: "nvgre-cli-other",
        ["--datapath: dpdk", "auto, xdp or userspace"]),
    BadInput("hosts without a store", ["hosts"], ["--store: (none)", "the store of the hosts"]),
    BadInput(
        "a store address that is not etcd", ["save", "--store", "http://127.0.0.1:2379"],
        ["--store: http://127.0.0.1:2379", "etcd://HOST:PORT"]),
    // more policy files
    BadInput(
        "record type unknown in a file", ["apply", "FILE"],
        file: policyWith("mac: 02:00:00:00:01:03}", "mac: 02:00:00:00:01:03, type: dynamic}"),
        ["lookupRecords[2].type: dynamic", "static, l2-only, gateway"]),
    BadInput(
        "the same port twice in a file", ["apply", "FILE"],
        file: policyWith("{interface: port2, vsid: 5001", "{interface: port1, vsid: 5001"),
        ["ports[1].interface: port1", "an interface used by one port only"]),
    BadInput(
        "two domains with one id", ["apply", "FILE"], file: policyWith("{id: 2, name: blue}", "{id: 1, name: blue}"),
        ["routingDomains[1].id: 1", "an id no other routing domain uses"]),
    BadInput(
        "a VSID as text in JSON", ["apply", "FILE"],
        file: #"{"subnets": [{"vsid": "red", "routingDomain": "red", "prefixes": ["198.19.1.0/24"]}]}"#,
        ["subnets[0].vsid: red", "4096 to 16777214"]),
    BadInput(
        "a port address outside its subnet", ["apply", "FILE"],
        file: policyWith("addresses: [198.19.1.2]}", "addresses: [198.19.1.2, 198.19.7.2]}"),
        ["ports[1].addresses[1]: 198.19.7.2", "inside subnet 5001's prefixes"])
]

/// Every bad input fails with its message and exit code, and leaves the live state as it
/// was (the saved policy and the lookup records' table, read by bpftool, are unchanged).
@Suite(.serialized)
struct BadInputTests {
    @Test func badInputsAreNamedAndChangeNothing() throws {
        #expect(badInputs.count >= 100, "\(badInputs.count) bad inputs")
        let h = try CLIHost(tag: "bad")
        let up = h.run(["up", "--uplink", "ul", "--policy", try h.file("local.yaml", localPolicy)])
        try #require(up.status == 0, "\(up.err)")
        let saved = h.run(["save"]).out
        let dump = { try? Set(BpftoolTable.records(h.instance)) }
        let lookups = dump()
        for bad in badInputs {
            let path = try bad.file.map { try h.file("bad.yaml", $0) }
            let args = bad.args.map { $0 == "FILE" ? path! : $0 }
            let r = h.run(args, instance: bad.instance)
            #expect(r.status == bad.status, "\(bad.name): exit \(r.status), \(r.err)")
            for s in bad.says { #expect(r.err.contains(s), "\(bad.name): \(r.err) does not say \(s)") }
            #expect(r.err.hasPrefix("nvgre: "), "\(bad.name): \(r.err)")
            #expect(h.run(["save"]).out == saved, "\(bad.name) changed the live state")
        }
        #expect(dump() == lookups)
        #expect(!FileManager.default.fileExists(atPath: "/sys/fs/bpf/nvgre-cli-other"))
    }
}
