import Foundation
import NvgreDatapath

/// Runs a shell command; throws with its output when it fails.
@discardableResult
func sh(_ command: String) throws -> String {
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

struct ShellError: Error, CustomStringConvertible {
    let command: String
    let status: Int32
    let output: String
    var description: String { "`\(command)` exited \(status): \(output)" }
}

/// Network namespaces owned by one test. Names carry the run's prefix (NVGRE_TEST_PREFIX,
/// set by scripts/run-tests.sh, whose trap removes leftovers) plus a per-test tag, so runs
/// and tests never collide. Everything is deleted in deinit.
final class TestNetwork {
    let prefix: String
    private(set) var namespaces: [String] = []

    init(tag: String) {
        let run = ProcessInfo.processInfo.environment["NVGRE_TEST_PREFIX"] ?? "nvt\(getpid())x"
        prefix = "\(run)-\(tag)"
    }

    /// Creates namespace `<prefix>-<name>` with loopback up; returns its full name.
    @discardableResult
    func namespace(_ name: String) throws -> String {
        let full = "\(prefix)-\(name)"
        try sh("ip netns add \(full) && ip -n \(full) link set lo up")
        namespaces.append(full)
        return full
    }

    /// Runs `ip` arguments inside namespace `ns`.
    @discardableResult
    func ip(_ ns: String, _ args: String) throws -> String {
        try sh("ip -n \(ns) \(args)")
    }

    /// Runs a command inside namespace `ns`.
    @discardableResult
    func exec(_ ns: String, _ command: String) throws -> String {
        try sh("ip netns exec \(ns) \(command)")
    }

    /// A veth pair: `a` in namespace `nsA`, `b` in `nsB`, both up.
    func veth(_ a: String, in nsA: String, _ b: String, in nsB: String, macA: String? = nil, macB: String? = nil) throws {
        try ip(nsA, "link add \(a) type veth peer name \(b) netns \(nsB)")
        if let m = macA { try ip(nsA, "link set \(a) address \(m)") }
        if let m = macB { try ip(nsB, "link set \(b) address \(m)") }
        try ip(nsA, "link set \(a) up")
        try ip(nsB, "link set \(b) up")
    }

    func ifindex(_ name: String, in ns: String) throws -> UInt32 {
        try NetworkNamespace.run(in: ns) { try interfaceIndex(name) }
    }

    deinit {
        for ns in namespaces.reversed() { _ = try? sh("ip netns del \(ns)") }
    }
}
