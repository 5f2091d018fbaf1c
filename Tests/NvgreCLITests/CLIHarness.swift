import Foundation
import NvgreDatapath
import NvgreLab

/// What one run of the `nvgre` binary gave.
struct CLIResult {
    let status: Int32
    let out: String
    let err: String

    /// The standard output parsed as JSON (the -j output).
    var json: Any? { try? JSONSerialization.jsonObject(with: Data(out.utf8)) }
}

/// A host namespace with an uplink and two VM ports, an instance name unique to this run,
/// and a way to run the built binary there. `down` and the namespaces go in deinit (and the
/// test scripts' trap removes pins and state left by a crash).
final class CLIHost {
    let net: LabNetwork
    let ns: String
    let vm1: String, vm2: String
    let instance: String
    private var vmLinks: [ProgramLink] = []

    /// The `nvgre` binary `swift test` built next to the test bundle.
    static let binary = builtBinary("nvgre")

    init(tag: String) throws {
        net = LabNetwork(tag: tag)
        ns = try net.namespace("h")
        vm1 = try net.namespace("vm1")
        vm2 = try net.namespace("vm2")
        instance = net.prefix
        try net.veth("ul", in: ns, "ulp", in: try net.namespace("fabric"))
        try net.veth("port1", in: ns, "eth0", in: vm1, macB: "02:00:00:00:01:01")
        try net.veth("port2", in: ns, "eth0", in: vm2, macB: "02:00:00:00:01:02")
        try net.ip(ns, "addr add 198.18.0.1/24 dev ul")
        // Frames redirected into a veth need an XDP program on the receiving end (the VM's).
        let pass = try Datapath()
        vmLinks = try [vm1, vm2].map { vm in
            try NetworkNamespace.run(in: vm) { try pass.attach(.barePass, interface: "eth0") }
        }
        try net.ip(vm1, "addr add 198.19.1.1/24 dev eth0")
        try net.ip(vm2, "addr add 198.19.1.2/24 dev eth0")
    }

    deinit {
        _ = run(["down"])
        for f in files { try? FileManager.default.removeItem(atPath: f) }
    }

    /// Temporary files this host wrote; removed in deinit (the scripts' trap removes them too).
    private var files: [String] = []

    /// A temporary path named with the run's prefix, removed with the host.
    func temporaryPath(_ name: String) -> String {
        let path = NSTemporaryDirectory() + "\(instance)-\(name)"
        files.append(path)
        return path
    }

    /// Runs `nvgre -n <ns> --instance <instance> args...`.
    @discardableResult
    func run(
        _ args: [String], instance: String? = nil, stdin: String? = nil, environment: [String: String] = [:]
    ) -> CLIResult {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Self.binary)
        p.arguments = ["-n", ns, "--instance", instance ?? self.instance] + args
        if !environment.isEmpty {
            p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        // Outputs go to files: a pipe that fills up would block a large `save`.
        let outPath = NSTemporaryDirectory() + "\(self.instance)-\(UUID().uuidString).out", errPath = outPath + ".err"
        _ = FileManager.default.createFile(atPath: outPath, contents: nil)
        _ = FileManager.default.createFile(atPath: errPath, contents: nil)
        defer {
            try? FileManager.default.removeItem(atPath: outPath)
            try? FileManager.default.removeItem(atPath: errPath)
        }
        p.standardOutput = FileHandle(forWritingAtPath: outPath)
        p.standardError = FileHandle(forWritingAtPath: errPath)
        let input = Pipe()
        p.standardInput = input
        do { try p.run() } catch { return CLIResult(status: -1, out: "", err: "\(error)") }
        if let stdin { input.fileHandleForWriting.write(Data(stdin.utf8)) }
        input.fileHandleForWriting.closeFile()
        p.waitUntilExit()
        let outData = FileManager.default.contents(atPath: outPath) ?? Data(),
            errData = FileManager.default.contents(atPath: errPath) ?? Data()
        return CLIResult(
            status: p.terminationStatus, out: String(decoding: outData, as: UTF8.self),
            err: String(decoding: errData, as: UTF8.self))
    }

    /// Writes `text` to a temporary file and returns its path.
    func file(_ name: String, _ text: String) throws -> String {
        let path = temporaryPath(name)
        // Not atomically: Foundation's atomic write leaves a TemporaryDirectory.* behind.
        try text.write(toFile: path, atomically: false, encoding: .utf8)
        return path
    }

    /// examples/two-tenants.yaml, whose interfaces (ul, port1) this host has.
    static let example: String = {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        return try! String(contentsOf: root.appendingPathComponent("examples/two-tenants.yaml"), encoding: .utf8)
    }()
}
