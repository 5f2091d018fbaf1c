import Foundation
import NvgreDatapath
import NvgrePolicy
import NvgreUserspace
import NvgreUserspaceIO
import NvgreWire

/// An instance on the userspace data path: no BPF anywhere. Its state directory holds the
/// settings (`datapath=userspace`, the uplink, why XDP was not used), the whole policy
/// (lookup records included: no map holds them) and the counters its agent writes; the
/// agent (`nvgre agent`) forwards, and picks a changed policy up within a second.
public final class UserspaceInstance {
    public let name: String
    public let uplink: String
    /// Why XDP was not used (`up --datapath auto` falling back), or nil when asked for.
    public let fallbackReason: String?
    public var stateDirectory: String { Instance.stateDirectory(name) }
    public var policyPath: String { "\(stateDirectory)/policy.yaml" }
    public var countersPath: String { "\(stateDirectory)/counters.json" }
    static func settingsPath(_ name: String) -> String { "\(Instance.stateDirectory(name))/settings" }

    private init(name: String, uplink: String, fallbackReason: String?) {
        self.name = name
        self.uplink = uplink
        self.fallbackReason = fallbackReason
    }

    /// Whether `name` is a userspace instance here.
    public static func exists(_ name: String) -> Bool {
        guard let text = try? String(contentsOfFile: settingsPath(name), encoding: .utf8) else { return false }
        return text.contains("datapath=userspace\n")
    }

    public static func up(name: String, uplink: String, fallbackReason: String?) throws -> UserspaceInstance {
        try Instance.checkName(name)
        if exists(name) || Instance.isRunning(name) {
            throw ControlError(
                "instance \(name) is already running",
                hint: "run `nvgre down` first, or choose another name with --instance")
        }
        guard existingInterfaceIndex(uplink) != nil else {
            throw PolicyErrors(errors: [
                PolicyError("uplink", uplink, "an existing interface in this network namespace")
            ])
        }
        try FileManager.default.createDirectory(
            atPath: Instance.stateDirectory(name), withIntermediateDirectories: true)
        let why = (fallbackReason ?? "").replacingOccurrences(of: "\n", with: " ")
        try Files.replace(settingsPath(name), with: "datapath=userspace\nuplink=\(uplink)\nfallback=\(why)\n")
        let instance = UserspaceInstance(name: name, uplink: uplink, fallbackReason: fallbackReason)
        try Files.replace(instance.policyPath, with: PolicyWriter.write(Policy(), as: .yaml))
        return instance
    }

    public static func open(_ name: String) throws -> UserspaceInstance {
        guard let text = try? String(contentsOfFile: settingsPath(name), encoding: .utf8),
            text.contains("datapath=userspace\n")
        else { throw ControlError("no userspace instance \(name) is running here", hint: nil) }
        var kv: [String: String] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: "=", maxSplits: 1).map(String.init)
            kv[parts[0]] = parts.count > 1 ? parts[1] : ""
        }
        let why = kv["fallback"].flatMap { $0.isEmpty ? nil : $0 }
        return UserspaceInstance(name: name, uplink: kv["uplink"] ?? "", fallbackReason: why)
    }

    /// Removes the state; the agent sees it gone and exits.
    public static func down(_ name: String) throws -> [String] {
        let dir = Instance.stateDirectory(name)
        let files = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
        try FileManager.default.removeItem(atPath: dir)
        HostStackGuard.remove(instance: name)
        return files.sorted()
    }

    public func storedPolicy() throws -> Policy {
        guard let bytes = FileManager.default.contents(atPath: policyPath) else {
            throw ControlError("cannot read \(policyPath)", hint: "`nvgre down` and `nvgre up` again")
        }
        var policy = try PolicyDocument.decode(bytes: Array(bytes), validate: false)
        policy.movedAway = movedAway()
        return policy
    }

    /// Policy.movedAway, which policy files do not hold: "VSID CA" lines beside policy.yaml.
    var movedAwayPath: String { "\(stateDirectory)/moved-away" }

    func movedAway() -> Set<MovedVM> {
        let text = (try? String(contentsOfFile: movedAwayPath, encoding: .utf8)) ?? ""
        return Set(
            text.split(separator: "\n").compactMap { line in
                let f = line.split(separator: " ")
                guard f.count == 2, let vsid = UInt32(f[0]), let ca = IPAddress(parsing: String(f[1])) else {
                    return nil
                }
                return MovedVM(vsid: vsid, customerAddress: ca)
            })
    }

    /// Validates and compiles `policy` here (interfaces must exist), then stores it whole in
    /// one rename: the agent reads either the old file or the new one (the VMs that moved
    /// away are written first; the new policy file is what makes the agent read both).
    public func apply(_ policy: Policy) throws -> CompiledPolicy {
        let valid = try policy.validated()
        let compiled = try compile(valid)
        let moved = valid.movedAway.map { "\($0.vsid) \($0.customerAddress)\n" }.sorted().joined()
        if moved != ((try? String(contentsOfFile: movedAwayPath, encoding: .utf8)) ?? "") {
            try Files.replace(movedAwayPath, with: moved)
        }
        try Files.replace(policyPath, with: PolicyWriter.write(valid, as: .yaml))
        return compiled
    }

    /// The policy as the decision core's tables, this host's interfaces resolved.
    public func compile(_ policy: Policy) throws -> CompiledPolicy {
        let errors = policy.providerAddresses.enumerated().filter { $0.element.interface != uplink }.map {
            PolicyError(
                "providerAddresses[\($0.offset)].interface", $0.element.interface, "the instance's uplink \(uplink)")
        }
        if !errors.isEmpty { throw PolicyErrors(errors: errors) }
        guard let up = existingInterfaceIndex(uplink) else {
            throw ControlError("the uplink \(uplink) is gone", hint: nil)
        }
        var ctx = CompileContext(uplinkIfindex: up, ifindex: { existingInterfaceIndex($0) })
        ctx.cpus = 1  // the userspace path keeps no per-CPU buckets
        // A gateway's own addresses and the uplink's prefixes are infrastructure, as on XDP.
        ctx.hostAddresses = try interfaceAddresses()
        return try PolicyCompiler.compile(policy, ctx)
    }

    /// The counters the agent last wrote: name -> packets, as `nvgre -j stats` names them.
    public func counters() -> [String: Any] {
        guard let data = FileManager.default.contents(atPath: countersPath),
            let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        else { return [:] }
        return json
    }
}
