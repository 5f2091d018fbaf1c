import Foundation
import NvgreControl
import NvgreWire

/// A host of ours in a lab, set up as a user does it: its namespace on the fabric's switch,
/// its VMs on veth ports (offloads at their defaults), then `nvgre up`, `nvgre apply` of a
/// policy text and `nvgre agent`, all through the CLI. `stop()` (or deinit) takes the
/// instance down; the namespaces go with `net`.
public final class CLIHost {
    public struct VM {
        public let port: String
        public let ns: String
        public let vm: LabVM
    }

    public let net: LabNetwork
    public let name: String
    public let ns: String
    public let pa: IPAddress
    public private(set) var vms: [VM] = []
    public let nvgre = builtBinary("nvgre")
    public var instance: String { ns }
    public var agentLog: String { "\(Instance.stateRoot)/\(instance)-agent.log" }
    private var agent: pid_t?
    private var up = false
    private var policyFile: String?

    public init(_ net: LabNetwork, fabric: LabFabric, name: String, pa: IPAddress, prefixLength: Int = 24) throws {
        self.net = net
        self.name = name
        self.pa = pa
        ns = try net.namespace(name)
        try fabric.connect(ns, port: "to-\(name)")
        try net.ip(ns, "addr add \(pa)/\(prefixLength) dev ul\(pa.family == .v6 ? " nodad" : "")")
        try net.setForwarding(true, in: ns, uplink: "ul")
    }

    deinit { stop() }

    /// A VM on port `port`, in its own namespace, at its default offloads.
    @discardableResult
    public func addVM(port: String, _ vm: LabVM) throws -> VM {
        let vmNS = try net.namespace("\(name)-\(port)")
        try net.veth(port, in: ns, "eth0", in: vmNS, macB: vm.mac.description)
        try LabFabric.receivesRedirects(net, "eth0", in: vmNS)
        try net.ip(vmNS, "addr add \(vm.ip4)/24 dev eth0")
        try net.ip(vmNS, "addr add \(vm.ip6)/64 dev eth0 nodad")
        let v = VM(port: port, ns: vmNS, vm: vm)
        vms.append(v)
        return v
    }

    /// `nvgre up` (with `upArguments`), `nvgre apply` of `policy` (YAML), then the agent;
    /// throws with the output of a command that fails.
    public func start(
        policy: String, upArguments: [String] = [], upCommand: [String]? = nil, agentCommand: [String]? = nil
    ) throws {
        if let upCommand {
            // `nvgre up` as the caller runs it (say under capsh, without some capabilities).
            let r = try Spawn.run(upCommand)
            if r.status != 0 { throw ShellErrorText("\(upCommand.joined(separator: " ")) on \(name): \(r.output)") }
            upOutput = r.output
        } else {
            upOutput = try checked(["up", "--uplink", "ul"] + upArguments)
        }
        up = true
        try apply(policy)
        try FileManager.default.createDirectory(atPath: Instance.stateRoot, withIntermediateDirectories: true)
        try startAgent(agentCommand ?? [nvgre, "-n", ns, "--instance", instance, "agent"])
    }

    private var agentCommand: [String]?

    private func startAgent(_ command: [String]) throws {
        agentCommand = command
        unlink(agentLog)
        agent = try Spawn.start(command, output: agentLog, detached: false)
        // The XDP path's agent handles exceptions; the userspace path's forwards.
        let deadline = Date().addingTimeInterval(10)
        while true {
            let text = (try? String(contentsOfFile: agentLog, encoding: .utf8)) ?? ""
            if text.contains("handling exceptions") || text.contains("forwarding on") { break }
            if Date() > deadline { throw ShellErrorText("the agent of host \(name) did not start: \(text)") }
            usleep(20_000)
        }
    }

    /// Writes `policy` to this host's policy file and applies it.
    public func apply(_ policy: String) throws {
        let path = "\(Instance.stateRoot)/\(instance)-policy.yaml"
        try policy.write(toFile: path, atomically: true, encoding: .utf8)
        policyFile = path
        try checked(["apply", path])
    }

    /// Runs `nvgre -n <ns> --instance <instance> args...`.
    @discardableResult
    public func cli(_ args: [String]) throws -> Spawn.Result {
        try Spawn.run([nvgre, "-n", ns, "--instance", instance] + args)
    }

    /// `nvgre -j stats`, parsed.
    public func stats() throws -> [String: Any] {
        let r = try cli(["-j", "stats"])
        guard r.status == 0, let json = try JSONSerialization.jsonObject(with: Data(r.output.utf8)) as? [String: Any]
        else { throw ShellErrorText("nvgre stats on \(name): \(r.output)") }
        return json
    }

    /// Packets of one reason in `nvgre -j stats`'s section `section` (drops, exceptions, ...).
    public func count(_ section: String, _ reason: String) throws -> Int {
        let s = try stats()[section] as? [String: Any]
        return ((s?[reason] as? [String: Any])?["packets"] as? Int) ?? 0
    }

    /// Kills the agent as a crash would (SIGKILL) and starts it again with the same command;
    /// returns once the new one forwards.
    public func restartAgentAfterKill() throws {
        guard let pid = agent, let command = agentCommand else { return }
        kill(pid, SIGKILL)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        try startAgent(command)
    }

    public func stop() {
        if let pid = agent { Spawn.stop(pid) }
        agent = nil
        if up { _ = try? Spawn.run([nvgre, "--instance", instance, "down"]) }
        up = false
        unlink(agentLog)
        if let f = policyFile { unlink(f) }
        policyFile = nil
    }

    /// What `nvgre up` printed.
    public private(set) var upOutput = ""

    @discardableResult
    private func checked(_ args: [String]) throws -> String {
        let r = try cli(args)
        if r.status != 0 { throw ShellErrorText("nvgre \(args.joined(separator: " ")) on \(name): \(r.output)") }
        return r.output
    }
}
