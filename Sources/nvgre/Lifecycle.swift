import ArgumentParser
import Foundation
import NvgreControl
import NvgreDatapath
import NvgrePolicy

struct Up: NvgreCommand {
    static let configuration = CommandConfiguration(
        abstract: "Load the data path, pin it, and attach the fabric program to the uplink.",
        discussion:
            "VM ports are attached as they are added (port add, or apply). Native XDP is tried first, generic where "
            + "the driver refuses, unless --xdp-mode says otherwise."
    )

    @OptionGroup var global: GlobalOptions
    @Option(help: ArgumentHelp("The interface on the provider network.", valueName: "iface")) var uplink: String
    @Option(help: ArgumentHelp("auto (native, else generic), native or generic.", valueName: "mode")) var xdpMode =
        "auto"
    @Option(
        help: ArgumentHelp(
            "xdp, userspace, or auto: XDP, and the userspace data path when loading or attaching it fails (the "
                + "output says why).",
            valueName: "datapath")) var datapath = "auto"
    @Flag(help: "Honour `ip rule` policy routing for the underlay (about 200 ns more per encapsulated packet).")
    var fibRules = false
    @Option(
        help: ArgumentHelp(
            "Each routing domain's share of the exception path: at most this many frames a second handed to "
                + "userspace, the rest dropped and counted (exception-throttled); 0: no limit.",
            valueName: "n")) var exceptionRate: String?
    @Option(help: ArgumentHelp("The burst of frames a routing domain may hand to userspace at once.", valueName: "n"))
    var exceptionBurst: String?
    @Option(
        help: ArgumentHelp(
            "Each VM port's share of the exception path, within its domain's (frames a second; 0: no limit per port).",
            valueName: "n")) var portExceptionRate: String?
    @Option(help: ArgumentHelp("The burst of frames a VM port may hand to userspace at once.", valueName: "n"))
    var portExceptionBurst: String?
    @Option(
        help: ArgumentHelp(
            "Each VM port's broadcast and multicast replicated to its VSID (head-end replication), frames a second; "
                + "the rest dropped and counted (flood-throttled); 0: no limit.",
            valueName: "n")) var floodRate: String?
    @Option(help: ArgumentHelp("The burst of frames a VM port may flood at once.", valueName: "n"))
    var floodBurst: String?
    @Option(help: ArgumentHelp("Capacity of the lookup record map.", valueName: "n")) var maxLookups: String?
    @Option(help: ArgumentHelp("Capacity of the subnet map (and counter slots).", valueName: "n")) var maxSubnets:
        String?
    @Option(help: ArgumentHelp("Capacity of the port map.", valueName: "n")) var maxPorts: String?
    @Option(
        help: ArgumentHelp(
            "Apply this policy file once up (all or nothing: on failure the instance is taken down). Repeat it to "
                + "apply several files as one policy.",
            valueName: "file")) var policy: [String] = []

    @Flag(
        help: ArgumentHelp(
            "If the instance is already running, leave it as it is and succeed (a boot unit's start after a "
                + "restart: the running data path keeps forwarding)."))
    var ifDown = false

    func execute() throws {
        try global.enter()
        if ifDown && (Instance.isRunning(global.instance) || UserspaceInstance.exists(global.instance)) {
            if global.json {
                print(JSON.object([("instance", .string(global.instance)), ("alreadyRunning", .bool(true))]).rendered())
            } else {
                print("instance \(global.instance) is already running: left as it is")
            }
            return
        }
        let mode = try parseChoice(xdpMode, "--xdp-mode", as: XDPModeChoice.self).mode
        var options = LoadOptions()
        if let s = maxLookups { options.maxLookups = try parseNumber(s, "--max-lookups", 1...67_108_864) }
        if let s = maxSubnets { options.maxSubnets = try parseNumber(s, "--max-subnets", 1...1_048_576) }
        if let s = maxPorts { options.maxPorts = try parseNumber(s, "--max-ports", 1...1_048_576) }
        var share = ExceptionShare.default
        if let s = exceptionRate { share.perSecond = try parseNumber(s, "--exception-rate", 0...10_000_000) }
        if let s = exceptionBurst { share.burst = try parseNumber(s, "--exception-burst", 1...1_000_000) }
        var portShare = ExceptionShare.defaultPerPort
        if let s = portExceptionRate {
            portShare.perSecond = try parseNumber(s, "--port-exception-rate", 0...10_000_000)
        }
        if let s = portExceptionBurst { portShare.burst = try parseNumber(s, "--port-exception-burst", 1...1_000_000) }
        var floodShare = ExceptionShare.defaultFlood
        if let s = floodRate { floodShare.perSecond = try parseNumber(s, "--flood-rate", 0...10_000_000) }
        if let s = floodBurst { floodShare.burst = try parseNumber(s, "--flood-burst", 1...1_000_000) }
        let desired = policy.isEmpty ? nil : try readPolicy(try policyFilePaths(policy))
        let choice = try parseChoice(datapath, "--datapath", as: DatapathChoice.self)
        if choice == .userspace { return try upUserspace(desired, fallbackReason: nil) }
        let instance: Instance
        do {
            instance = try asOptions {
                try Instance.up(
                    name: global.instance, uplink: uplink, mode: mode, fibUseRules: fibRules,
                    exceptionShare: share, portExceptionShare: portShare, floodShare: floodShare, options: options)
            }
        } catch let e as DatapathError where choice == .auto {
            // The kernel, the driver or the privileges refuse BPF or XDP: forward from userspace.
            return try upUserspace(desired, fallbackReason: "\(e)")
        }
        if let desired {
            do {
                printSummary(try instance.apply(desired), json: global.json)
            } catch {
                _ = try? Instance.down(global.instance)
                throw error
            }
        }
        let attached = xdpAttachMode(ifindex: instance.settings.uplinkIfindex)?.rawValue ?? "none"
        if !global.json {
            print(
                "instance \(instance.name) up: nv_from_fabric on \(uplink) (\(attached) XDP), pins in "
                    + "\(instance.pinDirectory)"
            )
        } else if desired == nil {
            print(
                JSON.object([
                    ("instance", .string(instance.name)), ("uplink", .string(uplink)), ("xdp", .string(attached)),
                    ("pins", .string(instance.pinDirectory))
                ]).rendered())
        }
    }
}

enum DatapathChoice: String, CaseIterable {
    case auto, xdp, userspace
}

extension Up {
    /// An instance on the userspace data path; `nvgre agent` forwards for it.
    func upUserspace(_ desired: Policy?, fallbackReason: String?) throws {
        let instance = try asOptions {
            try UserspaceInstance.up(name: global.instance, uplink: uplink, fallbackReason: fallbackReason)
        }
        if let desired {
            do {
                _ = try instance.apply(desired)
            } catch {
                _ = try? UserspaceInstance.down(global.instance)
                throw error
            }
        }
        if global.json {
            var fields: [(String, JSON)] = [
                ("instance", .string(instance.name)), ("uplink", .string(uplink)), ("datapath", .string("userspace"))
            ]
            if let why = fallbackReason { fields.append(("fallback", .string(why))) }
            print(JSON.object(fields).rendered())
        } else {
            if let why = fallbackReason { print("XDP is not available here (\(why)): using the userspace data path") }
            print(
                "instance \(instance.name) up: userspace data path on \(uplink), state in \(instance.stateDirectory); "
                    + "`nvgre agent` forwards")
        }
    }
}

struct Down: ChangesInstance {
    static let configuration = CommandConfiguration(
        abstract: "Detach every program of the instance and remove its pins and state.")

    @OptionGroup var global: GlobalOptions
    var changesTheStore: Bool { false }

    func execute() throws {
        try global.enter()
        let userspace = UserspaceInstance.exists(global.instance)
        let removed = try asOptions {
            userspace ? try UserspaceInstance.down(global.instance) : try Instance.down(global.instance)
        }
        if global.json {
            print(
                JSON.object([("instance", .string(global.instance)), ("removed", .array(removed.map { .string($0) }))])
                    .rendered())
        } else {
            print(
                userspace
                    ? "instance \(global.instance) down: userspace state removed (its agent stops)"
                    : "instance \(global.instance) down: removed \(removed.count) pins (links detached)")
        }
    }
}

struct Check: NvgreCommand {
    static let configuration = CommandConfiguration(
        abstract: "Load the XDP programs into the kernel (verifier included) and unload them.")

    func execute() throws {
        let dp = try Datapath()
        for p in Program.allCases { print("\(p.rawValue): loaded, fd \(dp.programFD(p))") }
    }
}

/// Reads policy files as one policy: each section is the files' sections in the order given
/// (the tenant tables every host shares in one file, this host's PAs and ports in another).
func readPolicy(_ paths: [String]) throws -> Policy {
    try decodePolicy(try readPolicyFiles(paths))
}

/// The bytes of policy files ("-" is standard input); those in `preread` were read already.
func readPolicyFiles(_ paths: [String], preread: [String: [UInt8]] = [:]) throws -> [(path: String, bytes: [UInt8])] {
    try paths.map { path in
        if let bytes = preread[path] { return (path, bytes) }
        if path == "-" { return (path, [UInt8](FileHandle.standardInput.readDataToEndOfFile())) }
        guard let bytes = Files.read(path) else { throw unreadablePolicyFile(path) }
        return (path, bytes)
    }
}

/// What of `paths` can be read only once (standard input, a pipe): read now, for both the
/// digest and the policy.
func readOnceOnlyPolicyFiles(_ paths: [String]) throws -> [String: [UInt8]] {
    var out: [String: [UInt8]] = [:]
    for path in paths where out[path] == nil && (path == "-" || !Files.isRegularFile(path)) {
        out[path] = try readPolicyFiles([path])[0].bytes
    }
    return out
}

/// Instance.inputDigest of policy files: regular files through mapped pages (nothing
/// copied), the others from `preread` (readOnceOnlyPolicyFiles).
func digestOfPolicyFiles(_ paths: [String], preread: [String: [UInt8]]) throws -> String {
    func digest(_ rest: ArraySlice<String>, _ mapped: [UnsafeRawBufferPointer]) throws -> String {
        guard let path = rest.first else { return Instance.inputDigest(mapped) }
        if let bytes = preread[path] {
            return try bytes.withUnsafeBytes { try digest(rest.dropFirst(), mapped + [$0]) }
        }
        guard let d = try Files.withMapped(path, { try digest(rest.dropFirst(), mapped + [$0]) }) else {
            throw unreadablePolicyFile(path)
        }
        return d
    }
    return try digest(paths[...], [])
}

/// Policy file arguments with each directory replaced by its policy files (*.yaml, *.yml,
/// *.json) in name order; a directory without any is an error, not an empty policy.
func policyFilePaths(_ arguments: [String]) throws -> [String] {
    try arguments.flatMap { path -> [String] in
        var isDirectory: ObjCBool = false
        guard path != "-", FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory),
            isDirectory.boolValue
        else { return [path] }
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).filter {
            !$0.hasPrefix(".") && ($0.hasSuffix(".yaml") || $0.hasSuffix(".yml") || $0.hasSuffix(".json"))
        }.sorted()
        if names.isEmpty { throw fieldError("file", path, "a policy file, or a directory holding *.yaml files") }
        return names.map { (path.hasSuffix("/") ? path : path + "/") + $0 }
    }
}

func unreadablePolicyFile(_ path: String) -> Error { fieldError("file", path, "a readable policy file (YAML or JSON)") }

/// Policy files as one policy, each section concatenated in order. Its rules are checked by
/// whoever uses it (apply, trace), once, on the whole policy.
func decodePolicy(_ files: [(path: String, bytes: [UInt8])]) throws -> Policy {
    var merged = Policy()
    for (path, bytes) in files {
        do {
            merged.append(try PolicyDocument.decode(bytes: bytes, validate: false))
        } catch let e as PolicyErrors where files.count > 1 {
            // With several files, say which one (its own item numbers, as read).
            throw PolicyErrors(errors: e.errors.map { PolicyError("\(path): \($0.field)", $0.value, $0.allowed) })
        }
    }
    return merged
}

/// Reads a policy file ("-" is standard input).
func readPolicy(_ path: String) throws -> Policy { try readPolicy([path]) }

/// `--xdp-mode`: auto (native, else generic) or one mode.
enum XDPModeChoice: String, CaseIterable {
    case auto, native, generic

    var mode: XDPMode? { self == .auto ? nil : XDPMode(rawValue: rawValue) }
}
