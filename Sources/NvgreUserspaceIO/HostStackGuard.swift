import Foundation
import NvgreWire

/// Keeps the host's own network stack out of what the userspace path forwards. A packet
/// socket only taps: without this the kernel would also take every frame a VM sends on its
/// port (answer its ARP for the host's addresses, accept its packets to them: a tenant
/// reaching the host) and every reply to a NAT flow on a gateway's external interface (and
/// answer it with a TCP reset), and every NVGRE frame for its PAs (processed up to its GRE
/// handler for nothing). The XDP and tc programs consume those frames; here an
/// nftables table of the netdev family drops them at ingress, after the packet sockets have
/// their copy (the kernel runs taps before the ingress hook). No BPF is involved, so it works
/// where the userspace path is the fallback.
public enum HostStackGuard {
    /// What the kernel must not see: frames of these ports (all of them), and on a gateway,
    /// TCP and UDP to its external addresses (NAT flows, published services: the gateway
    /// engine's) and packets to route-mode subnets (routed here, not by the kernel).
    public struct Scope: Equatable, Sendable {
        public var ports: [String] = []
        /// The uplink and this host's provider addresses: NVGRE to them is the rings'.
        public var uplink: String?
        public var providerAddresses: [IPAddress] = []
        public var externalInterface: String?
        public var externalAddresses: [IPAddress] = []
        public var routedPrefixes: [IPPrefix] = []

        public init(
            ports: [String], uplink: String? = nil, providerAddresses: [IPAddress] = [],
            externalInterface: String? = nil, externalAddresses: [IPAddress] = [], routedPrefixes: [IPPrefix] = []
        ) {
            self.ports = ports
            self.uplink = uplink
            self.providerAddresses = providerAddresses
            self.externalInterface = externalInterface
            self.externalAddresses = externalAddresses
            self.routedPrefixes = routedPrefixes
        }
    }

    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// The table of an instance (nftables names: letters, digits, underscores; any other
    /// character as _ and its code, so that `a-b` and `a_b` do not meet).
    public static func tableName(_ instance: String) -> String {
        "nvgre_"
            + instance.unicodeScalars.map {
                $0.properties.isAlphabetic || ("0"..."9").contains($0) ? String($0) : "_\(String($0.value, radix: 16))"
            }.joined()
    }

    /// The nft script replacing the instance's table in one transaction (the table is
    /// created empty first so that deleting it cannot fail).
    public static func script(instance: String, _ scope: Scope) -> String {
        let table = "netdev \(tableName(instance))"
        var lines = ["table \(table)", "delete table \(table)", "table \(table) {"]
        if !scope.ports.isEmpty {
            lines.append(
                "  chain ports { type filter hook ingress devices = { \(quoted(scope.ports)) } priority 0; policy drop; }"
            )
        }
        if let uplink = scope.uplink {
            // NVGRE to this host's PAs: the kernel would take it up to its GRE handler for nothing.
            let v4 = scope.providerAddresses.filter { $0.family == .v4 }.map(\.description)
            let v6 = scope.providerAddresses.filter { $0.family == .v6 }.map(\.description)
            lines += chain(
                "uplink", on: uplink,
                (v4.isEmpty ? [] : ["ip daddr { \(v4.joined(separator: ", ")) } ip protocol 47 drop"])
                    + (v6.isEmpty ? [] : ["ip6 daddr { \(v6.joined(separator: ", ")) } ip6 nexthdr 47 drop"]))
        }
        if let ext = scope.externalInterface {
            let v4 = scope.externalAddresses.filter { $0.family == .v4 }.map(\.description)
            let routed = scope.routedPrefixes.filter { $0.address.family == .v4 }.map(\.description)
            lines += chain(
                "external", on: ext,
                (v4.isEmpty ? [] : ["ip daddr { \(v4.joined(separator: ", ")) } ip protocol { 6, 17 } drop"])
                    + (routed.isEmpty ? [] : ["ip daddr { \(routed.joined(separator: ", ")) } drop"]))
        }
        lines.append("}")
        return lines.joined(separator: "\n") + "\n"
    }

    private static func quoted(_ names: [String]) -> String { names.map { "\"\($0)\"" }.joined(separator: ", ") }

    /// An ingress chain on `device` that accepts all but what `rules` drop (none: no chain).
    private static func chain(_ name: String, on device: String, _ rules: [String]) -> [String] {
        guard !rules.isEmpty else { return [] }
        return [
            "  chain \(name) {", "    type filter hook ingress device \(quoted([device])) priority 0; policy accept;"
        ]
            + rules.map { "    " + $0 } + ["  }"]
    }

    /// Installs (or replaces) the instance's table.
    public static func install(instance: String, _ scope: Scope) throws {
        let names = scope.ports + [scope.uplink, scope.externalInterface].compactMap { $0 }
        if let odd = names.first(where: { $0.contains("\"") || $0.contains("\\") }) {
            throw Failure(description: "interface \(odd): a name with a quote or a backslash cannot be guarded")
        }
        try nft(script(instance: instance, scope))
    }

    /// Removes the instance's table, if there is one.
    public static func remove(instance: String) {
        let table = "netdev \(tableName(instance))"
        try? nft("table \(table)\ndelete table \(table)\n")
    }

    /// Where nft is, if installed.
    public static var nftPath: String? {
        ["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"].first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    static func nft(_ script: String) throws {
        guard let path = nftPath else {
            throw Failure(
                description:
                    "nft is not installed: the userspace data path needs it to keep the host's stack out of the "
                    + "tenants' traffic (Debian package nftables)")
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = ["-f", "-"]
        let input = Pipe(), errors = Pipe()
        p.standardInput = input
        p.standardError = errors
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        input.fileHandleForWriting.write(Data(script.utf8))
        try input.fileHandleForWriting.close()
        let message = errors.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        if p.terminationStatus != 0 {
            let text = String(decoding: message, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            throw Failure(description: "nft refused the host stack guard: \(text)")
        }
    }
}
