import ArgumentParser
import CNvgre
import Foundation
import NvgreControl
import NvgreDatapath
import NvgrePolicy
import NvgreStore
import NvgreWire

/// Options every command takes.
struct GlobalOptions: ParsableArguments {
    @Option(
        name: .long,
        help: ArgumentHelp("Instance name: pins in /sys/fs/bpf/NAME, state in /run/nvgre/NAME.", valueName: "name"))
    var instance: String = ProcessInfo.processInfo.environment["NVGRE_INSTANCE"] ?? "nvgre"

    @Option(
        name: [.customShort("n"), .long],
        help: ArgumentHelp(
            "Run in this network namespace (as `ip -n`; default: $NVGRE_NETNS, for hooks and units whose data path "
                + "lives in a namespace).", valueName: "netns"))
    var netns: String? = ProcessInfo.processInfo.environment["NVGRE_NETNS"]

    @Flag(name: [.customShort("j"), .long], help: "JSON output for machines.")
    var json = false

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Act on the store of many hosts instead of this host's maps: etcd://HOST:PORT[,HOST:PORT...] "
                + "(default: $NVGRE_STORE).", valueName: "address"))
    var store: String?

    @Option(
        name: .long,
        help: ArgumentHelp(
            "With a store: the host whose provider addresses and ports are read or written.", valueName: "name"))
    var host: String?

    /// The namespace the command started in, taken before the first `enter` moves it.
    static let startNamespace = NetworkNamespace.current()

    /// --host, checked: it becomes part of the store's keys.
    func storeHost() throws -> String? {
        try host.map { try checkedHostName($0, field: "--host") }
    }

    /// The store's address, from --store or $NVGRE_STORE; nil: this host's maps.
    var storeAddress: String? { store ?? ProcessInfo.processInfo.environment["NVGRE_STORE"] }

    /// Enters the namespace (this process is single-threaded here, so setns holds). The
    /// store, if any, stays reached from the namespace the command started in.
    func enter() throws {
        guard let ns = netns else { return }
        if storeAddress != nil {
            let home = Self.startNamespace
            if home >= 0 {
                StoreSockets.open = { family, type in
                    (try? NetworkNamespace.run(inNamespace: home) { socket(family, type, 0) }) ?? -1
                }
            }
        }
        if try !NetworkNamespace.enter(ns) {
            throw fieldError("--netns", ns, "a network namespace in /run/netns (see `ip netns list`)")
        }
    }

    func openInstance() throws -> Instance {
        try enter()
        if UserspaceInstance.exists(instance) {
            throw ControlError(
                "instance \(instance) runs the userspace data path, which this command does not serve yet",
                hint:
                    "`nvgre apply`, the object commands (domain, subnet, lookup, route, pa, port, service), `show`, "
                    + "`stats`, `save`, `agent` and `down` work")
        }
        let opened = try asOptions { try Instance.open(instance) }
        if let done = opened.recovered { printError(done) }
        return opened
    }

    /// The instance when it runs the userspace data path (after entering the namespace).
    func userspaceInstance() throws -> UserspaceInstance? {
        try enter()
        return UserspaceInstance.exists(instance) ? try UserspaceInstance.open(instance) : nil
    }
}

/// Every nvgre command: errors are printed as one readable block and set the exit code
/// (2 for bad input naming the field, 1 for anything that failed while doing the work).
protocol NvgreCommand: ParsableCommand {
    func execute() throws
}

extension NvgreCommand {
    func run() throws {
        do {
            let turn = try (self as? ChangesInstance)?.takeWriterTurn()
            defer { turn?.release() }
            try execute()
        } catch let e as PolicyErrors {
            printError(
                e.errors.count == 1
                    ? "\(e)" : "\(e.errors.count) problems:\n" + e.errors.map { "  \($0)" }.joined(separator: "\n"))
            throw ExitCode(2)
        } catch let e as ExitCode {
            throw e
        } catch StoreError.badAddress(let text) {
            // The address is an argument (--store or $NVGRE_STORE): a bad input like any other.
            printError(
                "\(fieldError("--store", text, "etcd://HOST:PORT[,HOST:PORT...] (from --store or $NVGRE_STORE)"))")
            throw ExitCode(2)
        } catch {
            printError("\(error)")
            throw ExitCode(1)
        }
    }
}

/// A command that changes an instance's state: it runs in the instance's writer turn
/// (WriterTurn), so that two at once serialize instead of interleaving.
protocol ChangesInstance: NvgreCommand {
    var global: GlobalOptions { get }
    /// false for a run that changes nothing (a dry run).
    var changesSomething: Bool { get }
    /// true when it changes the store instead of this host's instance.
    var changesTheStore: Bool { get }
}

extension ChangesInstance {
    var changesSomething: Bool { true }
    var changesTheStore: Bool { global.storeAddress != nil }

    /// The turn, or nil when there is none to take: the store is written instead (etcd
    /// orders its writers), nothing is changed, or the instance does not exist.
    func takeWriterTurn() throws -> WriterTurn? {
        guard changesSomething, !changesTheStore, (try? Instance.checkName(global.instance)) != nil else {
            return nil
        }
        return try WriterTurn.take(instance: global.instance, doing: commandLineForOthers()) {
            if isatty(2) != 0 { printError($0) }
        }
    }
}

/// This process's command line, shortened, for another writer's waiting message.
func commandLineForOthers() -> String {
    let line = (["nvgre"] + CommandLine.arguments.dropFirst()).joined(separator: " ")
    return line.count > 120 ? String(line.prefix(117)) + "..." : line
}

func printError(_ message: String) {
    FileHandle.standardError.write(("nvgre: " + message + "\n").data(using: .utf8)!)
}

/// Warns (standard error; the command still succeeds) about each port among `interfaces`
/// that is a veth whose other end would drop what the fast path redirects to it.
func warnAboutUnreadyVethPeers(_ interfaces: [String]) {
    for port in interfaces {
        guard let end = VethPeer.unready(port) else { continue }
        let exec =
            end.namespace.map {
                $0.hasPrefix("of process ") ? "nsenter -n -t \($0.dropFirst(11)) " : "ip netns exec \($0) "
            } ?? ""
        printError(
            "warning: \(port) is a veth whose other end (\(end)) has no XDP program and GRO off: frames the fast "
                + "path redirects to the VM miss NAPI; kernels before the backlog fallback drop them uncounted, newer "
                + "ones queue them per CPU, out of order under load\n"
                + "hint: turn GRO on there (`\(exec)ethtool -K \(end.interface) gro on`), or attach an XDP program to it"
        )
    }
}

/// The layers below the CLI name what is wrong by the model's field names; the user typed
/// options, so their errors are given back under the option's name.
let optionNames = [
    "instance": "--instance", "uplink": "--uplink", "port": "--port", "dst": "--dst", "src": "--src",
    "vsid": "--vsid", "outerSource": "--outer-src"
]

func asOptions<T>(_ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch let e as PolicyErrors {
        throw PolicyErrors(
            errors: e.errors.map { PolicyError(optionNames[$0.field] ?? $0.field, $0.value, $0.allowed) })
    }
}

/// An option naming one of an enum's cases by its raw value; the error lists them all.
/// (ArgumentParser's own typed options would answer a bad value with its wording and exit
/// code 64; nvgre names field, value and what is allowed, and exits 2, as for every bad input.)
func parseChoice<T: CaseIterable & RawRepresentable>(_ s: String, _ field: String, as: T.Type = T.self) throws -> T
where T.RawValue == String {
    if let v = T(rawValue: s) { return v }
    let names = T.allCases.map(\.rawValue)
    let allowed = names.count < 2 ? names.joined() : names.dropLast().joined(separator: ", ") + " or " + names.last!
    throw fieldError(field, s, allowed)
}

/// A host's name in the store, checked: it becomes part of the store's keys.
func checkedHostName(_ h: String, field: String) throws -> String {
    let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_")
    guard (1...63).contains(h.count), h.allSatisfy({ allowed.contains($0) }) else {
        throw fieldError(field, h, "a host name of 1 to 63 letters, digits, dots, dashes or underscores")
    }
    return h
}

func fieldError(_ field: String, _ value: String, _ allowed: String) -> PolicyErrors {
    PolicyErrors(errors: [PolicyError(field, value, allowed)])
}

// MARK: argument values, checked with the same wording as policy files

func parseVSID(_ s: String, _ field: String) throws -> UInt32 {
    let value = s.lowercased().hasPrefix("0x") ? UInt32(s.dropFirst(2), radix: 16) : UInt32(s)
    guard let v = value, Policy.vsidRange.contains(v) else {
        throw fieldError(
            field, s,
            "a VSID from 4096 to 16777214, decimal or hex with 0x (0-4095 are reserved, 16777215 is vendor-specific)")
    }
    return v
}

func parseAddress(_ s: String, _ field: String) throws -> IPAddress {
    guard let a = IPAddress(parsing: s) else {
        throw fieldError(field, s, "an IPv4 address (198.19.1.1) or an IPv6 address (2001:db8::1)")
    }
    return a
}

func parsePrefix(_ s: String, _ field: String) throws -> IPPrefix {
    guard let p = IPPrefix(parsing: s) else {
        throw fieldError(field, s, "a prefix such as 198.19.1.0/24 or 2001:db8:19:1::/64")
    }
    return p
}

func parseMAC(_ s: String, _ field: String) throws -> MACAddress {
    guard let m = MACAddress(parsing: s) else { throw fieldError(field, s, "a MAC address such as 02:00:00:00:01:01") }
    return m
}

func parseNumber(_ s: String, _ field: String, _ range: ClosedRange<UInt32>) throws -> UInt32 {
    guard let v = UInt32(s), range.contains(v) else {
        throw fieldError(field, s, "a whole number from \(range.lowerBound) to \(range.upperBound)")
    }
    return v
}

/// Progress on a terminal only, on one rewritten line.
func progressPrinter() -> (String) -> Void {
    guard isatty(2) != 0 else { return { _ in } }
    return { FileHandle.standardError.write("\r\u{1b}[K\($0)".data(using: .utf8)!) }
}

func endProgress() {
    if isatty(2) != 0 { FileHandle.standardError.write("\r\u{1b}[K".data(using: .utf8)!) }
}

/// Applies `change` to the live policy as one all-or-nothing apply, and prints the outcome.
func edit(_ g: GlobalOptions, _ change: (inout Policy) throws -> Void) throws {
    if g.storeAddress != nil { return try editStore(g, change) }
    if let u = try g.userspaceInstance() {
        // A userspace instance: the stored policy edited, validated and stored whole.
        var p = try u.storedPolicy()
        try change(&p)
        _ = try u.apply(p)
        printUserspaceSummary(p, dryRun: false, json: g.json)
        return
    }
    let instance = try g.openInstance()
    var p = try instance.livePolicy()
    try change(&p)
    let summary = try instance.apply(p)
    printSummary(summary, json: g.json)
}
