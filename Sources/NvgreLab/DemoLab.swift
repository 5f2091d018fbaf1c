import Foundation
import NvgreControl
import NvgreDatapath
import NvgrePolicy
import NvgreWire

#if canImport(Glibc)
    import Glibc
#endif

/// The demo topology on network namespaces, driven through the `nvgre` binary as a user
/// would: a bridge underlay (namespace `fabric`, bridge br0) joining hosts A, B and the
/// gateway host G; host X outside, behind G; on A and B one namespace per VM (see
/// DemoPlan), an `nvgre` instance applied from examples/demo and an `nvgre agent`.
///
/// Names: namespaces `<prefix>-A`, `<prefix>-A-red1`, `<prefix>-fabric`, ...; instances
/// `<prefix>-A`, `<prefix>-B` (bpffs is shared by all namespaces, so instance names must
/// differ). `stop()` (or deinit) removes everything unless `keep` is set.
public final class DemoLab {
    public let net: LabNetwork
    /// The family of the provider addresses the policy uses (the underlay carries both).
    public let underlay: IPFamily
    public let nvgre = builtBinary("nvgre")
    public var keep: Bool {
        get { net.keep }
        set { net.keep = newValue }
    }
    private var agents: [String: pid_t] = [:]
    private var started: [String] = []
    private var temporaryFiles: [String] = []

    /// The repository's examples/demo directory (found from this source file).
    public static let examples: String = {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("examples/demo").path
    }()

    /// Room for 1500-byte customer packets plus NVGRE over IPv6 (62 bytes). A test sets
    /// 1500 before build() to make customers' full-size packets too big.
    public var underlayMTU = 1600

    /// Queues of every veth (as of a NIC's): more than one lets flows spread over cores.
    public var queues = 1

    /// Set before build(): spare hypervisor C (DemoPlan.c) joins, with no VM, for migrations.
    public var spare = false
    /// The hosts of this lab: A, B and G, and C when `spare`.
    public var hosts: [DemoHost] { DemoPlan.hosts + (spare ? [DemoPlan.c] : []) }
    /// The hosts with an `nvgre agent`: A and B, and C when `spare`.
    public var hypervisors: [DemoHost] { DemoPlan.hypervisors + (spare ? [DemoPlan.c] : []) }

    public init(net: LabNetwork, underlay: IPFamily = .v4) {
        self.net = net
        self.underlay = underlay
    }

    deinit { if !keep { stop() } }

    public func ns(_ host: DemoHost) -> String { "\(net.prefix)-\(host.name)" }
    public func ns(_ vm: DemoVM) -> String { "\(net.prefix)-\(vm.host)-\(vm.name)" }
    public var fabric: String { "\(net.prefix)-fabric" }
    public var outside: String { "\(net.prefix)-X" }
    public func instance(_ host: DemoHost) -> String { "\(net.prefix)-\(host.name)" }
    public func agentLog(_ host: DemoHost) -> String { "\(Instance.stateRoot)/\(instance(host))-agent.log" }

    // MARK: Building

    /// Namespaces, links and addresses; no data path yet.
    public func build() throws {
        // Room for what NVGRE adds to a 1500-byte customer frame (42 bytes over IPv4, 62 over
        // IPv6), as HNV fabrics are configured.
        let underlaySwitch = try LabFabric(net, mtu: underlayMTU, queues: queues)
        for h in hosts {
            try net.namespace(h.name)
            try underlaySwitch.connect(ns(h), port: "to-\(h.name.lowercased())")
            try net.ip(ns(h), "addr add \(h.pa4)/24 dev ul")
            try net.ip(ns(h), "addr add \(h.pa6)/64 dev ul nodad")
        }
        try net.namespace("X")
        try net.veth("ext", in: ns(DemoPlan.g), "eth0", in: outside)
        try receivesRedirects("eth0", in: outside)
        try net.exec(outside, "ethtool -K eth0 tx off")  // full checksums, as a real NIC hands them over
        try net.ip(ns(DemoPlan.g), "addr add \(DemoPlan.gExternal4)/24 dev ext")
        try net.ip(ns(DemoPlan.g), "addr add \(DemoPlan.gExternal6)/64 dev ext nodad")
        try net.ip(outside, "addr add \(DemoPlan.x4)/24 dev eth0")
        try net.ip(outside, "addr add \(DemoPlan.x6)/64 dev eth0 nodad")

        try net.setForwarding(true, in: ns(DemoPlan.g), uplink: "ul")
        try net.exec(ns(DemoPlan.g), "sysctl -qw net.ipv4.conf.ext.forwarding=1")
        for h in hypervisors {
            // bpf_fib_lookup refuses to forward unless forwarding is on.
            try net.setForwarding(true, in: ns(h), uplink: "ul")
            for vm in DemoPlan.vms where vm.host == h.name {
                try net.namespace("\(h.name)-\(vm.name)")
                try net.veth(vm.name, in: ns(h), "eth0", in: ns(vm), macB: vm.mac.description, queues: queues)
                // The VM keeps its defaults: checksum offload, TSO and GSO on.
                try receivesRedirects("eth0", in: ns(vm))
                try net.ip(ns(vm), "addr add \(vm.ip4)/24 dev eth0")
                try net.ip(ns(vm), "addr add \(vm.ip6)/64 dev eth0 nodad")
                try net.ip(ns(vm), "route add default via \(vm.gateway4)")
                try net.ip(ns(vm), "-6 route add default via \(vm.gateway6)")
            }
        }
    }

    private func receivesRedirects(_ interface: String, in namespace: String) throws {
        try LabFabric.receivesRedirects(net, interface, in: namespace)
    }

    // MARK: The data path, through the CLI

    /// The commands that bring host `h` up, as a user types them (for the narration).
    public func upCommand(_ h: DemoHost) -> [String] {
        [nvgre, "-n", ns(h), "--instance", instance(h), "up", "--uplink", "ul"]
            + (userspaceHosts.contains(h.name) ? ["--datapath", "userspace"] : [])
    }

    /// Hosts (by name) brought up on the userspace data path instead of XDP.
    public var userspaceHosts: Set<String> = []

    /// Set before start(): the tables live in this store (a running etcd cluster) instead of
    /// being applied to each host's maps. Each host's files are applied to the store under
    /// its name (`--host`), and its agent (the gateway on G) follows the store.
    public var store: EtcdCluster?

    /// The arguments that make a command act on the store for host `h` (none without one).
    public func storeArguments(_ h: DemoHost) -> [String] {
        store.map { ["--store", $0.address, "--host", h.name] } ?? []
    }

    public func applyCommand(_ h: DemoHost) throws -> [String] {
        store == nil
            ? [nvgre, "-n", ns(h), "--instance", instance(h), "apply"] + (try policyFiles(h))
            : [nvgre] + storeArguments(h) + ["apply"] + (try policyFiles(h))
    }

    /// Extra arguments of `nvgre gateway` (short timeouts in tests).
    public var gatewayArguments: [String] = []
    /// Appended to every `nvgre agent` command line (say `--metrics`).
    public var agentArguments: [String] = []
    public var gatewayLog: String { "\(Instance.stateRoot)/\(instance(DemoPlan.g))-gateway.log" }

    /// `nvgre up` and `nvgre apply` on A, B and G, a background `nvgre agent` on A and B and
    /// `nvgre gateway` on G.
    public func start(detachAgents: Bool = false) throws {
        for h in hosts {
            try checked(upCommand(h))
            started.append(instance(h))
            try checked(try applyCommand(h))
        }
        try startAgents(detached: detachAgents)
    }

    /// With a store: seconds from the agents' start until every host had applied the store
    /// as it was then (set by startAgents).
    public private(set) var firstSyncSeconds: Double?

    /// One `nvgre agent` per hypervisor, in the background; returns once they consume.
    /// `detached` agents outlive this process (a kept demo); they exit at `nvgre down`.
    public func startAgents(detached: Bool) throws {
        for h in hypervisors {
            if !started.contains(instance(h)) { started.append(instance(h)) }
            try? FileManager.default.createDirectory(atPath: Instance.stateRoot, withIntermediateDirectories: true)
            agents[h.name] = try Spawn.start(
                [nvgre, "-n", ns(h), "--instance", instance(h), "agent"] + storeArguments(h) + agentArguments,
                output: agentLog(h), detached: detached)
        }
        let begun = Date()
        try startGateway(detached: detached)
        try waitForAgents()
        if let store {
            try waitForStore(revision: try store.policyRevision())
            firstSyncSeconds = Date().timeIntervalSince(begun)
        }
        try waitForUnderlayNeighbors()
    }

    /// `nvgre gateway` on G, in the background; returns once it consumes the ring.
    public func startGateway(detached: Bool = false) throws {
        let g = DemoPlan.g
        if !started.contains(instance(g)) { started.append(instance(g)) }
        unlink(gatewayLog)
        agents[g.name] = try Spawn.start(
            [nvgre, "-n", ns(g), "--instance", instance(g), "gateway", "--log-flows"] + storeArguments(g)
                + gatewayArguments,
            output: gatewayLog, detached: detached)
        let ready = userspaceHosts.contains(g.name) ? "forwarding on" : "handling exceptions"
        try Spawn.waitForOutput(gatewayLog, containing: ready, what: "the gateway on host G")
    }

    /// Stops host `h`'s agent the hard way (SIGKILL), as a crash would.
    public func killAgent(_ h: DemoHost) {
        guard let pid = agents.removeValue(forKey: h.name) else { return }
        kill(pid, SIGKILL)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
    }

    /// Starts host `h`'s agent again (after killAgent); returns once it consumes.
    public func restartAgent(_ h: DemoHost) throws {
        unlink(agentLog(h))
        agents[h.name] = try Spawn.start(
            [nvgre, "-n", ns(h), "--instance", instance(h), "agent"] + storeArguments(h) + agentArguments,
            output: agentLog(h), detached: false)
        let ready = userspaceHosts.contains(h.name) ? "forwarding on" : "handling exceptions"
        try Spawn.waitForOutput(agentLog(h), containing: ready, what: "the agent of host \(h.name)")
    }

    /// Stops `nvgre gateway` the hard way (SIGKILL), as a crash would.
    public func killGateway() {
        guard let pid = agents.removeValue(forKey: DemoPlan.g.name) else { return }
        kill(pid, SIGKILL)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
    }

    /// The agents start resolving every peer's provider address; traffic before that
    /// completes would meet an unresolved neighbor (and lose its first packets). IPv6
    /// neighbor discovery on a fresh link takes about a second.
    private func waitForUnderlayNeighbors() throws {
        for h in DemoPlan.hosts {  // not spare host C: no record names it yet
            for peer in DemoPlan.hosts where peer.name != h.name {
                let pa = peer.pa(underlay)
                let deadline = Date().addingTimeInterval(10)
                while !((try? sh("ip -n \(ns(h)) neigh show \(pa) dev ul")) ?? "").contains("lladdr") {
                    if Date() > deadline {
                        throw ShellErrorText("host \(h.name) did not resolve \(pa) on the underlay")
                    }
                    usleep(20_000)
                }
            }
        }
    }

    // MARK: A VM moving to another host

    /// The VM's tap on host `h` (interface `name`), made before the VM moves there, as a
    /// hypervisor makes the destination's tap before a live migration: a veth whose VM side
    /// (`eth1`, down) waits in the VM's namespace.
    public func makeTap(for vm: DemoVM, on h: DemoHost, interface name: String) throws {
        try net.veth(name, in: ns(h), "eth1", in: ns(vm), macB: vm.mac.description, queues: queues)
        try receivesRedirects("eth1", in: ns(vm))
        try net.ip(ns(vm), "link set eth1 down")
    }

    /// The VM resumes on the new host: its old interface is put aside (the old host's tap
    /// stays until the move is finished), the new one becomes eth0 with the VM's addresses
    /// and routes, in one shell so the switch-over takes milliseconds.
    public func resumeOnNewTap(_ vm: DemoVM) throws {
        let steps = [
            "ip link set eth0 down", "ip addr flush dev eth0", "ip link set eth0 name old0",
            "ip link set eth1 name eth0", "ip link set eth0 up", "ip addr add \(vm.ip4)/24 dev eth0",
            "ip addr add \(vm.ip6)/64 dev eth0 nodad", "ip route replace default via \(vm.gateway4)",
            "ip -6 route replace default via \(vm.gateway6)"
        ]
        try net.exec(ns(vm), "bash -c '\(steps.joined(separator: " && "))'")
    }

    /// The old host's tap, removed once the move is finished.
    public func removeOldTap(_ vm: DemoVM) throws {
        try net.ip(ns(vm), "link del old0")
    }

    /// Stops (SIGSTOP) or resumes (SIGCONT) a host's agent: a host that has not seen the
    /// store's latest change yet.
    public func pauseAgent(_ h: DemoHost, _ paused: Bool) {
        if let pid = agents[h.name] { kill(pid, paused ? SIGSTOP : SIGCONT) }
    }

    /// Runs `nvgre -n <host> --instance <host's> args...`.
    @discardableResult
    public func cli(_ h: DemoHost, _ args: [String]) throws -> Spawn.Result {
        try Spawn.run([nvgre, "-n", ns(h), "--instance", instance(h)] + args)
    }

    /// Runs an edit (`service add ...`) for host `h` as a user would: on the store when there
    /// is one, then waits until every host's agent has read the store past the write, so
    /// that what follows sees the change everywhere; otherwise on the host's maps.
    @discardableResult
    /// `then` runs as soon as the command has returned, before the wait.
    public func edit(
        _ h: DemoHost, _ args: [String], except: Set<String> = [], then: (() throws -> Void)? = nil
    ) throws -> Spawn.Result {
        guard store != nil else { return try cli(h, args) }
        let r = try Spawn.run([nvgre] + storeArguments(h) + args)
        try then?()
        // "applied to the store (generation G, revision R): ...", or a line per step of a
        // migration: the last one's revision.
        let last = r.output.split(separator: "\n").last { $0.contains("revision ") }.map(String.init) ?? ""
        guard r.status == 0, let match = last.range(of: #"revision [0-9]+"#, options: .regularExpression),
            let revision = Int(last[match].dropFirst("revision ".count))
        else { return r }
        try waitForStore(revision: revision, except: except)
        return r
    }

    /// Waits until every host's agent (`nvgre show -j`, its `store` section) has applied the
    /// store at `revision` or later (but the hosts named in `except`); returns the seconds
    /// that took.
    @discardableResult
    public func waitForStore(revision: Int, within seconds: Double = 10, except: Set<String> = []) throws -> Double {
        let start = Date()
        for h in hosts where !except.contains(h.name) {
            while true {
                let show = try? cli(h, ["show", "-j"])
                let json = (try? JSONSerialization.jsonObject(with: Data((show?.output ?? "").utf8))) as? [String: Any]
                let store = json?["store"] as? [String: Any]
                if let r = store?["revision"] as? Int, r >= revision, store?["lastError"] == nil { break }
                if Date().timeIntervalSince(start) > seconds {
                    throw ShellErrorText(
                        "host \(h.name) did not follow the store to revision \(revision) within \(seconds) s: "
                            + "\(show?.output ?? "no show")")
                }
                usleep(10_000)
            }
        }
        return Date().timeIntervalSince(start)
    }

    /// Stops the agents (the data path forwards on without them).
    public func stopAgents() {
        for (_, pid) in agents { Spawn.stop(pid) }
        agents = [:]
    }

    /// Stops the agents, takes the instances down; the namespaces go with `net`.
    public func stop() {
        stopAgents()
        for h in hypervisors { unlink(agentLog(h)) }
        unlink(gatewayLog)
        agents = [:]
        for name in started { _ = try? Spawn.run([nvgre, "--instance", name, "down"]) }
        started = []
        for f in temporaryFiles { unlink(f) }
        temporaryFiles = []
    }

    /// The agents say so in their log once they consume the ring (or, on the userspace
    /// path, forward).
    private func waitForAgents() throws {
        for h in hypervisors {
            let ready = userspaceHosts.contains(h.name) ? "forwarding on" : "handling exceptions"
            try Spawn.waitForOutput(agentLog(h), containing: ready, what: "the agent of host \(h.name)")
        }
    }

    private func checked(_ argv: [String]) throws {
        let r = try Spawn.run(argv)
        if r.status != 0 { throw ShellErrorText("\(argv.joined(separator: " ")) exited \(r.status): \(r.output)") }
    }

    /// The example files for an IPv4 underlay; for IPv6 the same policy with each provider
    /// address 198.18.0.N replaced by 2001:db8:18::N, written next to the run's temporary files.
    public func policyFiles(_ h: DemoHost) throws -> [String] {
        let files = ["\(Self.examples)/tenants.yaml", "\(Self.examples)/host-\(h.name.lowercased()).yaml"]
        if underlay == .v4 { return files }
        return try files.map { path in
            var p = try PolicyDocument.decode(
                bytes: [UInt8](FileManager.default.contents(atPath: path) ?? Data()), validate: false)
            for i in p.lookupRecords.indices {
                p.lookupRecords[i].providerAddress = Self.ipv6PA(p.lookupRecords[i].providerAddress)
            }
            for i in p.providerAddresses.indices {
                p.providerAddresses[i].address = Self.ipv6PA(p.providerAddresses[i].address)
            }
            let out =
                NSTemporaryDirectory()
                + "\(net.prefix)-\(URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent)-v6.yaml"
            try PolicyWriter.write(p, as: .yaml, header: "\(path) with IPv6 provider addresses").write(
                toFile: out, atomically: false, encoding: .utf8)  // atomic writes leave TemporaryDirectory.* behind
            temporaryFiles.append(out)
            return out
        }
    }

    /// Applies host `h`'s policy with one of its files (0: tenants, 1: the host's own)
    /// changed by `edit`, as a user would edit and re-apply it. Throws when apply fails.
    public func applyEdited(_ h: DemoHost, file index: Int, _ edit: (inout Policy) -> Void) throws {
        var files = try policyFiles(h)
        var p = try PolicyDocument.decode(
            bytes: [UInt8](FileManager.default.contents(atPath: files[index]) ?? Data()), validate: false)
        edit(&p)
        let out = NSTemporaryDirectory() + "\(net.prefix)-\(h.name)-edited-\(index).yaml"
        try PolicyWriter.write(p, as: .yaml, header: "\(files[index]) edited by a test").write(
            toFile: out, atomically: false, encoding: .utf8)
        temporaryFiles.append(out)
        files[index] = out
        try checked([nvgre, "-n", ns(h), "--instance", instance(h), "apply"] + files)
    }

    static func ipv6PA(_ pa: IPAddress) -> IPAddress {
        let host = (DemoPlan.hosts + [DemoPlan.c]).first { $0.pa4 == pa }
        return host?.pa6 ?? pa
    }
}
