import ArgumentParser
import Foundation
import NvgreControl
import NvgreDatapath
import NvgrePolicy
import NvgreStore

struct Apply: ChangesInstance {
    static let configuration = CommandConfiguration(
        abstract: "Make a policy file (YAML or JSON, a full desired state) the live state.",
        discussion:
            "Several files are read as one policy, each section concatenated in the order given (for instance the "
            + "tenant tables all hosts share, then this host's provider addresses and ports); item numbers in "
            + "messages count across the files in that order. The whole policy is validated first; then only "
            + "the differences against the live maps are written, in batches. All or nothing: if anything "
            + "fails, the live state is what it was before."
    )

    @OptionGroup var global: GlobalOptions
    @Argument(
        help: ArgumentHelp(
            "Policy files, directories (their *.yaml, *.yml and *.json files in name order, as /etc/nvgre/NAME at "
                + "boot), or - for standard input.",
            valueName: "file")) var arguments: [String]

    /// The files named, directories replaced by their policy files.
    var files: [String] { get throws { try policyFilePaths(arguments) } }
    @Flag(help: "Show what would change, change nothing.") var dryRun = false
    @Flag(
        help: ArgumentHelp(
            "Compare with every live entry even when these files are what the last apply made live.",
            discussion:
                "Without it, the same files applied again with nothing written since (by apply, lookup add|del or an "
                + "agent) change nothing at once; writes made behind nvgre's back (bpftool) need --verify."))
    var verify = false

    var changesSomething: Bool { !dryRun }

    func execute() throws {
        if global.storeAddress != nil { return try applyToStore() }
        if try global.userspaceInstance() != nil { return try applyUserspace() }
        let instance = try global.openInstance()
        let progress = progressPrinter()
        let files = try files
        if files.isEmpty { throw fieldError("file", "(none)", "one or more policy files, or - for standard input") }
        progress("reading \(files.joined(separator: ", "))")
        let started = monotonicSeconds()
        // The files' digest from their mapped pages (nothing copied); standard input or a
        // pipe is read once, for the digest and the policy both.
        let preread = try readOnceOnlyPolicyFiles(files)
        let digest = try digestOfPolicyFiles(files, preread: preread)
        if !dryRun, !verify, var unchanged = instance.unchangedSinceLastApply(input: digest) {
            endProgress()
            unchanged.seconds = monotonicSeconds() - started
            return printSummary(unchanged, json: global.json)
        }
        let policy = try decodePolicy(try readPolicyFiles(files, preread: preread))
        let summary = try instance.apply(policy, dryRun: dryRun, progress: progress)
        if !dryRun { instance.recordFingerprint(input: digest, policy: policy, summary: summary) }
        endProgress()
        printSummary(summary, json: global.json)
        if !dryRun { warnAboutUnreadyVethPeers(summary.attach) }
    }
}

extension Apply {
    /// On a userspace instance: validated and compiled here, stored whole; its agent takes it
    /// within a second.
    func applyUserspace() throws {
        guard let instance = try global.userspaceInstance() else { return }
        let files = try files
        if files.isEmpty { throw fieldError("file", "(none)", "one or more policy files, or - for standard input") }
        let policy = try readPolicy(files)
        if dryRun {
            _ = try instance.compile(try policy.validated())
        } else {
            _ = try instance.apply(policy)
        }
        printUserspaceSummary(policy, dryRun: dryRun, json: global.json)
    }
}

/// What a userspace instance now holds (it stores the policy whole: there is no diff).
func printUserspaceSummary(_ policy: Policy, dryRun: Bool, json: Bool) {
    let counts: [(String, Int)] = [
        ("subnets", policy.subnets.count), ("lookupRecords", policy.lookupRecords.count),
        ("ports", policy.ports.count), ("customerRoutes", policy.customerRoutes.count)
    ]
    if json {
        print(
            JSON.object(
                [("dryRun", .bool(dryRun)), ("datapath", .string("userspace"))]
                    + counts.map { ($0.0, .number(UInt64($0.1))) }
            ).rendered())
    } else {
        print(
            (dryRun ? "valid (nothing changed): " : "applied (the agent takes it within a second): ")
                + counts.map { "\($0.1) \($0.0)" }.joined(separator: ", "))
    }
}

struct Save: NvgreCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write the live state as a policy file; applying it changes nothing.")

    @OptionGroup var global: GlobalOptions
    @Option(name: .shortAndLong, help: ArgumentHelp("Write here instead of standard output.", valueName: "file"))
    var output: String?
    @Option(help: ArgumentHelp("yaml or json.", valueName: "format")) var format = "yaml"

    func execute() throws {
        let f = try parseChoice(format, "--format", as: PolicyFormat.self)
        let text: String
        if let address = global.storeAddress {
            let snapshot = try PolicyStore(try EtcdClient(address: address)).read()
            text = PolicyWriter.write(
                snapshot.policy(forHost: try global.storeHost()), as: f,
                header:
                    "nvgre policy in the store \(address) (generation \(snapshot.generation ?? "none"), "
                    + (global.host.map { "shared tables and host \($0)" } ?? "shared tables")
                    + "), written by `nvgre save`")
        } else if let u = try global.userspaceInstance() {
            text = PolicyWriter.write(
                try u.storedPolicy(), as: f,
                header: "nvgre policy of instance \(u.name) (uplink \(u.uplink), userspace), written by `nvgre save`")
        } else {
            let instance = try global.openInstance()
            text = PolicyWriter.write(
                try instance.livePolicy(), as: f,
                header:
                    "nvgre policy of instance \(instance.name) (uplink \(instance.settings.uplink)), written by `nvgre "
                    + "save`"
            )
        }
        if let output {
            guard FileManager.default.createFile(atPath: output, contents: text.data(using: .utf8)) else {
                throw fieldError("--output", output, "a path where a file can be written")
            }
        } else {
            print(text, terminator: "")
        }
    }
}

/// "lookup records: 3 added, 1 changed, 0 removed" per map, attachments, idle routes.
func printSummary(_ s: ApplySummary, json: Bool) {
    let order: [PolicyMap] = [.localPAs, .subnets, .routes, .lookups, .ports, .portAddresses, .config]
    if json {
        var fields: [(String, JSON)] = [("dryRun", .bool(s.dryRun)), ("changed", .bool(!s.changesNothing))]
        fields.append(
            (
                "maps",
                .object(
                    order.map { m in
                        let c = s.plan.changes[m] ?? MapChanges()
                        return (
                            m.rawValue,
                            .object([
                                ("added", .number(UInt64(c.added.count))),
                                ("changed", .number(UInt64(c.changed.count))),
                                ("removed", .number(UInt64(c.removed.count)))
                            ])
                        )
                    })
            ))
        fields.append(("attached", .array(s.attach.map { .string($0) })))
        fields.append(("detached", .array(s.detach.map { .string($0) })))
        fields.append(
            (
                "idleRoutes",
                .array(s.idleRoutes.map { .object([("index", .number(UInt64($0.index))), ("why", .string($0.why))]) })
            ))
        fields.append(("seconds", .string(String(format: "%.3f", s.seconds))))
        fields.append(("unchangedSinceLastApply", .bool(s.unchangedSinceLastApply)))
        print(JSON.object(fields).rendered())
        return
    }
    if s.changesNothing {
        print(s.dryRun ? "nothing would change" : "nothing to change: the live state is already this policy")
        if s.unchangedSinceLastApply {
            print(
                "  (these files are what the last apply made live, nothing was written since; --verify compares "
                    + "every live entry)")
        }
    } else {
        print(
            s.dryRun ? "would change (dry run, nothing written):" : "applied in \(String(format: "%.2f", s.seconds)) s:"
        )
        for m in order {
            guard let c = s.plan.changes[m], !c.isEmpty else { continue }
            print("  \(m.noun): \(c.added.count) added, \(c.changed.count) changed, \(c.removed.count) removed")
        }
        if !s.attach.isEmpty { print("  programs attached to: \(s.attach.joined(separator: ", "))") }
        if !s.detach.isEmpty { print("  programs detached from: \(s.detach.joined(separator: ", "))") }
    }
    for r in s.idleRoutes { print("  note: customerRoutes[\(r.index)] is not used: \(r.why)") }
}
