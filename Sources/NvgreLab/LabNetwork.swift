import Foundation
import NvgreDatapath
import NvgreWire

/// Runs a shell command; throws with its output when it fails.
@discardableResult
public func sh(_ command: String) throws -> String {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/sh")
    p.arguments = ["-c", command]
    let pipe = Pipe()
    p.standardOutput = pipe
    p.standardError = pipe
    try p.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    let out = String(decoding: data, as: UTF8.self)
    if p.terminationStatus != 0 {
        throw ShellError(command: command, status: p.terminationStatus, output: out)
    }
    return out
}

public struct ShellError: Error, CustomStringConvertible {
    let command: String
    let status: Int32
    let output: String
    public var description: String { "`\(command)` exited \(status): \(output)" }
}

/// Network namespaces owned by one test, demo or benchmark. Names carry the run's prefix
/// (NVGRE_TEST_PREFIX, set by the scripts whose trap removes leftovers) plus a tag, so runs
/// never collide. Everything is deleted in deinit unless `keep` is set.
public final class LabNetwork {
    public let prefix: String
    public private(set) var namespaces: [String] = []
    /// Leave the namespaces in place on deinit (a demo the user wants to poke at).
    public var keep = false

    public init(tag: String) {
        prefix = "\(Self.runPrefix)-\(tag)"
    }

    /// Names exactly `<run prefix>-<name>` (the demo: names a user types).
    public init(untagged: Void = ()) {
        prefix = Self.runPrefix
    }

    public static var runPrefix: String {
        ProcessInfo.processInfo.environment["NVGRE_TEST_PREFIX"] ?? "nvt\(getpid())x"
    }

    /// Creates namespace `<prefix>-<name>` with loopback up; returns its full name.
    @discardableResult
    public func namespace(_ name: String) throws -> String {
        let full = "\(prefix)-\(name)"
        try sh("ip netns add \(full) && ip -n \(full) link set lo up")
        namespaces.append(full)
        return full
    }

    /// Runs `ip` arguments inside namespace `ns`.
    @discardableResult
    public func ip(_ ns: String, _ args: String) throws -> String {
        try sh("ip -n \(ns) \(args)")
    }

    /// Runs a command inside namespace `ns`.
    @discardableResult
    public func exec(_ ns: String, _ command: String) throws -> String {
        try sh("ip netns exec \(ns) \(command)")
    }

    /// Makes a veth end hand frames over as a NIC puts them on a cable: checksums completed and
    /// GSO frames cut into segments before they leave. A veth otherwise passes 64 KiB frames
    /// and unfinished checksums to its peer, which no wire does (and which an XDP program on
    /// the peer could not take).
    public func likeAWire(_ interface: String, in ns: String) throws {
        try exec(ns, "ethtool -K \(interface) tx off tso off gso off")
    }

    /// A veth pair between two namespaces. `queues` > 1 gives each end that many rx and tx
    /// queues, so XDP traffic sent from several CPUs is received on each sender's CPU. Both
    /// ends come up.
    public func veth(
        _ a: String, in nsA: String, _ b: String, in nsB: String, macA: String? = nil, macB: String? = nil,
        queues: Int = 1
    ) throws {
        let q = queues > 1 ? " numtxqueues \(queues) numrxqueues \(queues)" : ""
        try ip(nsA, "link add \(a)\(q) type veth peer name \(b)\(q) netns \(nsB)")
        if let m = macA { try ip(nsA, "link set \(a) address \(m)") }
        if let m = macB { try ip(nsB, "link set \(b) address \(m)") }
        try ip(nsA, "link set \(a) up")
        try ip(nsB, "link set \(b) up")
    }

    /// bpf_fib_lookup refuses to forward (BPF_FIB_LKUP_RET_FWD_DISABLED) unless forwarding
    /// is on for the namespace and the uplink.
    public func setForwarding(_ on: Bool, in ns: String, uplink: String) throws {
        let v = on ? 1 : 0
        try exec(
            ns,
            "sysctl -qw net.ipv4.conf.all.forwarding=\(v) net.ipv4.conf.\(uplink).forwarding=\(v) "
                + "net.ipv6.conf.all.forwarding=\(v)"
        )
    }

    /// The MAC address of `interface` in namespace `ns`.
    public func mac(_ interface: String, in ns: String) throws -> MACAddress {
        let link = try Self.link(interface, in: ns)
        guard let text = link["address"] as? String, let mac = MACAddress(parsing: text) else {
            throw ShellErrorText("no MAC for \(interface) in \(ns): \(link)")
        }
        return mac
    }

    /// `ip -j [-s] link show dev IFACE` in namespace `ns`, parsed.
    static func link(_ interface: String, in ns: String, statistics: Bool = false) throws -> [String: Any] {
        let out = try sh("ip -n \(ns) -j \(statistics ? "-s " : "")link show dev \(interface)")
        guard let json = try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [[String: Any]],
            let link = json.first
        else {
            throw ShellErrorText("`ip link show dev \(interface)` in \(ns) said: \(out)")
        }
        return link
    }

    public func ifindex(_ name: String, in ns: String) throws -> UInt32 {
        try NetworkNamespace.run(in: ns) { try interfaceIndex(name) }
    }

    deinit {
        if keep { return }
        for ns in namespaces.reversed() { _ = try? sh("ip netns del \(ns)") }
    }
}
