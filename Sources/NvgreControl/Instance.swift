import CNvgre
import Foundation
import NvgreDatapath
import NvgrePolicy
import NvgreWire

/// Settings fixed by `nvgre up`, kept in the instance's state directory.
public struct InstanceSettings: Equatable, Sendable {
    public var uplink: String
    public var uplinkIfindex: UInt32
    /// Requested XDP mode for every attachment: nil tries native first, then generic.
    public var xdpMode: XDPMode?
    public var fibUseRules: Bool
    /// Each routing domain's share of the exception path, and each VM port's within it.
    public var exceptionShare: ExceptionShare
    public var portExceptionShare: ExceptionShare
    /// Each VM port's share of head-end replication.
    public var floodShare: ExceptionShare
    /// The programs running: their ABI version (the maps' layout and meaning) and build.
    public var programABI = UInt32(NV_ABI_VERSION)
    public var programBuild: UInt32 = 1

    public init(
        uplink: String, uplinkIfindex: UInt32, xdpMode: XDPMode?, fibUseRules: Bool,
        exceptionShare: ExceptionShare = .default,
        portExceptionShare: ExceptionShare = .defaultPerPort, floodShare: ExceptionShare = .defaultFlood
    ) {
        self.floodShare = floodShare
        self.uplink = uplink
        self.uplinkIfindex = uplinkIfindex
        self.xdpMode = xdpMode
        self.fibUseRules = fibUseRules
        self.exceptionShare = exceptionShare
        self.portExceptionShare = portExceptionShare
    }

    var text: String {
        "uplink=\(uplink)\nuplinkIfindex=\(uplinkIfindex)\nxdpMode=\(xdpMode?.rawValue ?? "auto")\n"
            + "fibUseRules=\(fibUseRules)\n"
            + "exceptionRate=\(exceptionShare.perSecond)\nexceptionBurst=\(exceptionShare.burst)\n"
            + "portExceptionRate=\(portExceptionShare.perSecond)\nportExceptionBurst=\(portExceptionShare.burst)\n"
            + "floodRate=\(floodShare.perSecond)\nfloodBurst=\(floodShare.burst)\n"
            + "programABI=\(programABI)\nprogramBuild=\(programBuild)\n"
    }

    init?(text: String) {
        var kv: [String: String] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: "=", maxSplits: 1).map(String.init)
            if parts.count == 2 { kv[parts[0]] = parts[1] }
        }
        guard let u = kv["uplink"], let i = kv["uplinkIfindex"].flatMap(UInt32.init), let m = kv["xdpMode"],
            let f = kv["fibUseRules"]
        else { return nil }
        func share(_ name: String, _ otherwise: ExceptionShare) -> ExceptionShare {
            guard let r = kv["\(name)Rate"].flatMap(UInt32.init), let b = kv["\(name)Burst"].flatMap(UInt32.init) else {
                return otherwise
            }
            return ExceptionShare(perSecond: r, burst: b)
        }
        self.init(
            uplink: u, uplinkIfindex: i, xdpMode: XDPMode(rawValue: m), fibUseRules: f == "true",
            exceptionShare: share("exception", .default), portExceptionShare: share("portException", .defaultPerPort),
            floodShare: share("flood", .defaultFlood))
        // Instances from before upgrades existed ran this ABI's first build.
        programABI = kv["programABI"].flatMap(UInt32.init) ?? UInt32(NV_ABI_VERSION)
        programBuild = kv["programBuild"].flatMap(UInt32.init) ?? 1
    }
}

/// One running data path: maps, programs and XDP links pinned under
/// `<pinRoot>/<name>/` on bpffs, and the parts of the policy that maps cannot hold (domain
/// names, route next hops and metrics, interface names) under `<stateRoot>/<name>/`. The
/// data path forwards on with no process running; every `nvgre` call reopens it.
public final class Instance {
    public static let pinRoot = "/sys/fs/bpf"
    public static let stateRoot = "/run/nvgre"

    public let name: String
    public let settings: InstanceSettings
    public let maps: DatapathMaps
    /// What opening it did about an apply that was killed half-way (nil: there was none).
    public private(set) var recovered: String?
    public var pinDirectory: String { Self.pinDirectory(name) }
    public var stateDirectory: String { Self.stateDirectory(name) }

    static func pinDirectory(_ name: String) -> String { "\(pinRoot)/\(name)" }
    static func stateDirectory(_ name: String) -> String { "\(stateRoot)/\(name)" }
    static let programPins: [(Program, String)] = [
        (.fromVM, "prog_from_vm"), (.fromFabric, "prog_from_fabric"),
        (.fromExternal, "prog_from_external")
    ]
    static func linkPin(_ interface: String) -> String { "link_\(interface)" }
    /// The uplink's tc program (nv_fabric_flood): its own prefix, never taken for a port.
    public static func floodLinkPin(_ interface: String) -> String { "floodlink_\(interface)" }
    /// A gateway's external interface: its own prefix, so that it is never taken for a port.
    static func externalLinkPin(_ interface: String) -> String { "extlink_\(interface)" }

    private init(name: String, settings: InstanceSettings, maps: DatapathMaps) {
        self.name = name
        self.settings = settings
        self.maps = maps
    }

    /// Instance names become directory names.
    public static func checkName(_ name: String) throws {
        let ok =
            !name.isEmpty && name.count <= 32
            && name.utf8.allSatisfy {
                ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5a) || ($0 >= 0x61 && $0 <= 0x7a) || $0 == 0x2d
                    || $0 == 0x5f
            }
        if !ok { throw PolicyErrors(errors: [PolicyError("instance", name, "1 to 32 letters, digits, - or _")]) }
    }

    public static func isRunning(_ name: String) -> Bool {
        Files.exists("\(pinDirectory(name))/config")
    }

    // MARK: lifecycle

    /// Loads the programs, pins everything, attaches the fabric program to the uplink.
    public static func up(
        name: String, uplink: String, mode: XDPMode?, fibUseRules: Bool, exceptionShare: ExceptionShare = .default,
        portExceptionShare: ExceptionShare = .defaultPerPort, floodShare: ExceptionShare = .defaultFlood,
        options: LoadOptions = LoadOptions()
    ) throws -> Instance {
        try checkName(name)
        if isRunning(name) {
            throw ControlError(
                "instance \(name) is already running (pins in \(pinDirectory(name)))",
                hint: "run `nvgre down` first, or choose another name with --instance")
        }
        guard let uplinkIndex = existingInterfaceIndex(uplink) else {
            throw PolicyErrors(errors: [
                PolicyError("uplink", uplink, "an existing interface in this network namespace")
            ])
        }
        let dir = pinDirectory(name)
        do {
            let dp = try Datapath(options: options, pinDirectory: dir)
            for (program, pin) in programPins {
                if bpf_obj_pin(dp.programFD(program), "\(dir)/\(pin)") != 0 {
                    throw DatapathError("pin program \(program.rawValue) at \(dir)/\(pin)", errno: errno)
                }
            }
            let link = try dp.attach(.fromFabric, ifindex: uplinkIndex, mode: mode)
            try link.pin(at: "\(dir)/\(linkPin(uplink))")
            // Broadcasts from the fabric, decapsulated by XDP, are replicated to ports by tc.
            let flood = try dp.attach(.fabricFlood, ifindex: uplinkIndex)
            try flood.pin(at: "\(dir)/\(floodLinkPin(uplink))")
            var settings = InstanceSettings(
                uplink: uplink, uplinkIfindex: uplinkIndex, xdpMode: mode, fibUseRules: fibUseRules,
                exceptionShare: exceptionShare, portExceptionShare: portExceptionShare, floodShare: floodShare)
            settings.programBuild = dp.objectBuild
            try FileManager.default.createDirectory(atPath: stateDirectory(name), withIntermediateDirectories: true)
            try write(settings.text, to: "\(stateDirectory(name))/settings")
            try write(PolicyWriter.write(Policy(), as: .yaml), to: "\(stateDirectory(name))/policy.yaml")
            let cfg = nv_config(uplinkIfindex: uplinkIndex, pa4: nil, pa6: nil, useRoutingRules: fibUseRules)
            try dp.config.update(0, cfg)
        } catch {
            try? Datapath.removePins(at: dir)
            try? FileManager.default.removeItem(atPath: stateDirectory(name))
            throw error
        }
        // The loader goes; the pins hold everything. Reopen them as every later call does.
        return try open(name)
    }

    /// Reopens a running instance (its pinned maps, no program load).
    public static func open(_ name: String) throws -> Instance {
        try checkName(name)
        guard isRunning(name) else {
            // Pin directories are closed to other users: one that exists but cannot be read
            // is not "no instance".
            if access("\(pinDirectory(name))/config", F_OK) != 0 && errno == EACCES {
                throw ControlError(
                    "this user (uid \(getuid())) lacks the privileges to reach instance \(name): \(pinDirectory(name)) "
                        + "is closed to it",
                    hint: "run nvgre as root, with sudo (CAP_BPF and CAP_NET_ADMIN are needed)")
            }
            throw ControlError("no instance \(name) is running here", hint: "start it with `nvgre up --uplink IFACE`")
        }
        let maps = try DatapathMaps(pinDirectory: pinDirectory(name))
        guard let text = try? String(contentsOfFile: "\(stateDirectory(name))/settings", encoding: .utf8),
            let settings = InstanceSettings(text: text)
        else {
            throw ControlError(
                "the state of instance \(name) is missing or damaged (\(stateDirectory(name))/settings)",
                hint: "`nvgre down` and `nvgre up` again, then apply the policy")
        }
        let instance = Instance(name: name, settings: settings, maps: maps)
        instance.recovered = instance.recoverInterruptedApply()
        return instance
    }

    /// Detaches everything and removes the pins and the state. Returns what it removed.
    @discardableResult
    public static func down(_ name: String) throws -> [String] {
        try checkName(name)
        let dir = pinDirectory(name), state = stateDirectory(name)
        guard
            isRunning(name) || FileManager.default.fileExists(atPath: dir)
                || FileManager.default.fileExists(atPath: state)
        else {
            throw ControlError(
                "no instance \(name) is running here", hint: "`nvgre show` lists what runs; --instance picks another")
        }
        let pins = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
        try Datapath.removePins(at: dir)
        try? FileManager.default.removeItem(atPath: state)
        return pins.sorted()
    }

    // MARK: policy

    /// The policy as last applied, without lookup records (those live only in the map).
    var storedPolicyPath: String { "\(stateDirectory)/policy.yaml" }

    public func storedPolicy() throws -> Policy {
        let path = storedPolicyPath
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw ControlError("cannot read \(path)", hint: "`nvgre down` and `nvgre up` again, then apply the policy")
        }
        return try PolicyDocument.decode(text, validate: false)
    }

    /// The live policy: the stored parts and every lookup record read back from the map,
    /// in a stable order (VSID, then address).
    public func livePolicy() throws -> Policy {
        var p = try storedPolicy()
        p.lookupRecords = try liveLookupRecords()
        return p
    }

    func liveLookupRecords() throws -> [LookupRecord] {
        let entries = try maps.lookups.rawEntries()
        var sorted = entries.map { e -> (k: nv_lookup_key, v: nv_lookup_val, order: (UInt32, UInt8, UInt64, UInt64)) in
            let k = e.key.load(as: nv_lookup_key.self)
            let hi = withUnsafeBytes(of: k.ca) { UInt64(bigEndian: $0.loadUnaligned(as: UInt64.self)) }
            let lo = withUnsafeBytes(of: k.ca) {
                UInt64(bigEndian: $0.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
            }
            return (k, e.value.load(as: nv_lookup_val.self), (k.vsid, k.family, hi, lo))
        }
        sorted.sort { $0.order < $1.order }
        return sorted.map {
            LookupRecord(
                vsid: $0.k.vsid, customerAddress: $0.k.customerAddress, providerAddress: $0.v.providerAddress,
                mac: $0.v.customerMAC, type: RecordType(abi: $0.v.recordType) ?? .staticRecord)
        }
    }

    public func compileContext() throws -> CompileContext {
        var ctx = CompileContext(
            uplinkIfindex: settings.uplinkIfindex, fibUseRules: settings.fibUseRules, ifindex: existingInterfaceIndex)
        ctx.exceptionShare = settings.exceptionShare
        ctx.portExceptionShare = settings.portExceptionShare
        ctx.floodShare = settings.floodShare
        ctx.hostAddresses = try interfaceAddresses()
        for e in try maps.subnets.rawEntries() {
            ctx.liveSlots[e.key.load(as: UInt32.self)] = e.value.load(as: nv_subnet.self).stats_slot
        }
        ctx.slotCount = maps.vsidStats.maxEntries
        return ctx
    }

    /// Makes `desired` the live state: validated, compiled, diffed against the live maps,
    /// and applied all or nothing (maps, port attachments, stored state). `known`: what the
    /// maps hold for certain (`images` of the last apply by the only writer, a store
    /// follower), diffed against instead of reading every live entry.
    public func apply(
        _ desired: Policy, dryRun: Bool = false, known: [PolicyMap: MapImage]? = nil,
        progress: @escaping (String) -> Void = { _ in }
    ) throws -> ApplySummary {
        if dryRun { return try applyInTurn(desired, dryRun: true, known: known, progress: progress) }
        return try inWriterTurn { try applyInTurn(desired, dryRun: false, known: known, progress: progress) }
    }

    private func applyInTurn(
        _ desired: Policy, dryRun: Bool, known: [PolicyMap: MapImage]?, progress: @escaping (String) -> Void
    ) throws -> ApplySummary {
        let started = monotonicSeconds()
        let ctx = try compileContext()
        // The million-record part of compiling needs nothing validation decides: it is built
        // on another core meanwhile.
        nonisolated(unsafe) var lookups: (image: MapImage, slots: [UInt32: UInt32])?
        let building = DispatchGroup()
        if desired.lookupRecords.count >= 10_000 {
            let ports = PolicyCompiler.portIndexes(desired, ctx)  // here: this thread is in the host's namespace
            let slots = PolicyCompiler.counterSlots(desired, ctx)
            DispatchQueue.global().async(group: building) {
                lookups = (PolicyCompiler.lookupsImage(desired, portIndexes: ports, slots: slots), slots)
            }
        }
        let policy: Policy
        do {
            policy = try desired.validated()
        } catch {
            building.wait()
            throw error
        }
        building.wait()
        try checkUplink(policy)
        let compiled = try PolicyCompiler.compile(policy, ctx, lookups: lookups)
        progress("reading the live maps")
        let live = try known ?? maps.liveImages()
        let plan = MapPlan(live: live, desired: compiled.images)
        try checkCapacity(compiled)
        let attachedNow = Set(attachedPorts())
        let wanted = Set(policy.ports.map(\.interface))
        let externalNow = attachedExternal(), externalWanted = policy.externalAddresses.first?.interface
        let attachExternal = externalWanted != nil && externalWanted != externalNow ? externalWanted : nil
        let detachExternal = externalNow != nil && externalNow != externalWanted ? externalNow : nil
        var summary = ApplySummary(
            plan: plan, images: compiled.images, idleRoutes: compiled.idleRoutes.map { ($0.index, $0.why) },
            attach: wanted.subtracting(attachedNow).sorted() + (attachExternal.map { ["\($0) (external)"] } ?? []),
            detach: attachedNow.subtracting(wanted).sorted() + (detachExternal.map { ["\($0) (external)"] } ?? []),
            dryRun: dryRun)
        if dryRun { return summary }

        forgetFingerprint()
        // What undoes this apply, kept until it commits: killed half-way, it is undone by the
        // next process that opens the instance (recoverInterruptedApply).
        let floodListsBefore = floodListsNow()
        let pinsToAdd =
            wanted.subtracting(attachedNow).sorted().map(Self.linkPin)
            + (attachExternal.map(Self.externalLinkPin).map { [$0] } ?? [])
        try ApplyJournal.write(
            plan: plan, floodListsBefore: floodListsBefore, newLinkPins: pinsToAdd,
            storedPolicyBefore: (try? String(contentsOfFile: storedPolicyPath, encoding: .utf8)) ?? "",
            writer: "pid \(getpid())", to: journalPath)
        let tx = MapTransaction(maps: maps, progress: progress)
        var newLinks: [String] = []
        var floodListsWritten = false
        do {
            try tx.apply(plan)
            floodListsWritten = true
            try replaceFloodLists(with: compiled.floodLists)
            for slot in compiled.newSlots { try maps.vsidStats.zeroPerCPU(slot) }
            for port in wanted.subtracting(attachedNow).sorted() {
                try attachPort(port)
                newLinks.append(Self.linkPin(port))
            }
            if let ext = attachExternal {
                try attach(.fromExternal, to: ext, pin: Self.externalLinkPin(ext))
                newLinks.append(Self.externalLinkPin(ext))
            }
            try Self.write(PolicyWriter.write(withoutRecords(policy), as: .yaml), to: storedPolicyPath)
        } catch {
            for pin in newLinks { Files.remove("\(pinDirectory)/\(pin)") }
            if floodListsWritten { _ = try? replaceFloodLists(with: floodListsBefore) }
            let problems = tx.rollBack()
            // A rollback that failed leaves the journal for the next process to finish.
            if problems.isEmpty { Files.remove(journalPath) }
            throw ControlError(
                "apply failed, nothing was changed: \(error)",
                hint: problems.isEmpty ? nil : "rolling back also failed: \(problems.joined(separator: "; "))")
        }
        // The commit: from here a killed apply is finished, not undone.
        if rename(journalPath, committedJournalPath) != 0 {
            throw DatapathError("commit the apply (rename \(journalPath))", errno: errno)
        }
        for port in attachedNow.subtracting(wanted) { detachPort(port) }
        if let ext = detachExternal { Files.remove("\(pinDirectory)/\(Self.externalLinkPin(ext))") }
        Files.remove(committedJournalPath)
        summary.seconds = monotonicSeconds() - started
        return summary
    }

    /// The flood lists as they are (one per VSID with a port: few).
    func floodListsNow() -> [UInt32: nv_flood_list] {
        var now: [UInt32: nv_flood_list] = [:]
        for vsid in maps.floodLists.keys() { now[vsid] = maps.floodLists.lookup(vsid) }
        return now
    }

    /// Makes the flood lists exactly `lists`. Lists are written before the stale ones go, so
    /// a VSID never lacks one.
    func replaceFloodLists(with lists: [UInt32: nv_flood_list]) throws {
        let old = floodListsNow()
        func same(_ a: nv_flood_list, _ b: nv_flood_list) -> Bool {
            withUnsafeBytes(of: a) { x in withUnsafeBytes(of: b) { y in x.elementsEqual(y) } }
        }
        for (vsid, l) in lists where old[vsid].map({ !same($0, l) }) ?? true {
            try maps.floodLists.update(vsid, l)
        }
        for vsid in old.keys where lists[vsid] == nil { _ = try maps.floodLists.delete(vsid) }
    }

    func withoutRecords(_ p: Policy) -> Policy {
        var q = p
        q.lookupRecords = []
        return q
    }

    /// Provider addresses live on the instance's uplink.
    func checkUplink(_ p: Policy) throws {
        let errors = p.providerAddresses.enumerated().filter { $0.element.interface != settings.uplink }.map {
            PolicyError(
                "providerAddresses[\($0.offset)].interface", $0.element.interface,
                "the instance's uplink \(settings.uplink)")
        }
        if !errors.isEmpty { throw PolicyErrors(errors: errors) }
    }

    /// The whole desired state must fit the maps as sized at `nvgre up`.
    func checkCapacity(_ c: CompiledPolicy) throws {
        var errors: [PolicyError] = []
        for m in PolicyMap.allCases {
            guard let f = m.field else { continue }
            let max = maps.raw(m).maxEntries
            if let n = c.images[m]?.count, n > max {
                errors.append(
                    PolicyError(
                        f, "\(n) \(m.noun)",
                        "at most \(max) (the size of map \(m.rawValue); `nvgre up --max-lookups` sizes lookups)"))
            }
        }
        if !errors.isEmpty { throw PolicyErrors(errors: errors) }
    }

    // MARK: single lookup records

    /// Adds one record without reading the others: checked against the stored subnets,
    /// written with BPF_NOEXIST so an existing record is never overwritten by accident.
    public func addLookupRecord(_ r: LookupRecord) throws {
        let stored = try storedPolicy()
        let errors = stored.validate(adding: r, field: "lookup")
        if !errors.isEmpty { throw PolicyErrors(errors: errors) }
        let key = nv_lookup_key(vsid: r.vsid, ca: r.customerAddress)
        if let old = maps.lookups.lookup(key) {
            throw ControlError(
                "a lookup record for \(r.customerAddress) in VSID \(r.vsid) exists already (provider address "
                    + "\(old.providerAddress), MAC \(old.customerMAC))",
                hint: "delete it first (`nvgre lookup del`), or change it in a policy file and `nvgre apply` it")
        }
        let value = nv_lookup_val(
            pa: r.providerAddress, mac: r.mac, type: r.type.abi,
            flags: stored.endpointsWithoutFlowID.contains(r.providerAddress) ? NV_REC_NO_FLOWID : nv_record_flags(0),
            statsSlot: maps.subnets.lookup(r.vsid)?.stats_slot ?? 0)
        // A new host of a flooding VSID joins its flood list (checked before anything is written).
        var grownList: nv_flood_list?
        if r.type != .gateway, !stored.providerAddresses.contains(where: { $0.address == r.providerAddress }),
            let list = maps.floodLists.lookup(r.vsid), !list.peerAddresses.contains(r.providerAddress)
        {
            guard list.peerAddresses.count < nv_flood_list.maxPeers else {
                throw ControlError(
                    "VSID \(r.vsid) would reach \(list.peerAddresses.count + 1) other hosts: head-end replication "
                        + "reaches at most \(nv_flood_list.maxPeers)",
                    hint: "set `flood: false` on the subnet (its broadcasts then get policy answers only)")
            }
            grownList = list.with(peers: list.peerAddresses + [r.providerAddress])
        }
        forgetFingerprint()
        do {
            try maps.lookups.update(key, value, flags: UInt64(BPF_NOEXIST))
            if let grownList { try maps.floodLists.update(r.vsid, grownList) }
        } catch let e as DatapathError where e.errno == E2BIG || e.errno == ENOSPC {
            throw ControlError(
                "the lookups map is full (\(maps.lookups.maxEntries) records)",
                hint: "`nvgre up --max-lookups N` sizes it; saving, then down, up and apply moves the policy over")
        }
    }

    public func deleteLookupRecord(vsid: UInt32, customerAddress: IPAddress) throws {
        let stored = try storedPolicy()
        if let port = stored.ports.first(where: { $0.vsid == vsid && $0.addresses.contains(customerAddress) }) {
            throw ControlError(
                "the lookup record for \(customerAddress) in VSID \(vsid) belongs to the VM on port \(port.interface)",
                hint: "delete the port first (`nvgre port del \(port.interface)`)")
        }
        let key = nv_lookup_key(vsid: vsid, ca: customerAddress)
        let old = maps.lookups.lookup(key)
        forgetFingerprint()
        guard try maps.lookups.delete(key) else {
            throw ControlError(
                "there is no lookup record for \(customerAddress) in VSID \(vsid)",
                hint: "`nvgre show lookups` lists them")
        }
        // A host left with no record of the VSID leaves its flood list.
        if let pa = old?.providerAddress, let list = maps.floodLists.lookup(vsid), list.peerAddresses.contains(pa),
            try !liveLookupRecords().contains(where: {
                $0.vsid == vsid && $0.providerAddress == pa && $0.type != .gateway
            })
        {
            try maps.floodLists.update(vsid, list.with(peers: list.peerAddresses.filter { $0 != pa }))
        }
    }

    // MARK: ports

    /// Interfaces of this instance with a pinned link (tc for ports), the uplink excluded.
    public func attachedPorts() -> [String] {
        let pins = (try? FileManager.default.contentsOfDirectory(atPath: pinDirectory)) ?? []
        return pins.filter { $0.hasPrefix("link_") }.map { String($0.dropFirst(5)) }.filter { $0 != settings.uplink }
            .sorted()
    }

    /// The gateway's external interface, when its program is attached.
    public func attachedExternal() -> String? {
        let pins = (try? FileManager.default.contentsOfDirectory(atPath: pinDirectory)) ?? []
        return pins.first { $0.hasPrefix("extlink_") }.map { String($0.dropFirst(8)) }
    }

    /// A port runs nv_from_vm on tc ingress. An XDP program already on the port would see the
    /// VM's frames first and turn the VM's TSO off (a veth whose peer runs XDP refuses it),
    /// so such a port is refused rather than half served.
    func attachPort(_ interface: String) throws {
        if let idx = existingInterfaceIndex(interface), let mode = xdpAttachMode(ifindex: idx) {
            throw ControlError(
                "port \(interface) already runs an XDP program (\(mode.rawValue)): it would take the VM's frames "
                    + "before nv_from_vm, and the VM's TSO would stay off",
                hint: "detach it (`ip link set dev \(interface) xdp off`), then apply again")
        }
        try attach(.fromVM, to: interface, pin: Self.linkPin(interface))
    }

    /// Attaches one of the instance's pinned programs and pins the link.
    func attach(_ program: Program, to interface: String, pin: String) throws {
        let idx = try interfaceIndex(interface)
        guard let progPin = Self.programPins.first(where: { $0.0 == program })?.1 else { return }
        let link = try attachPinned(program, at: "\(pinDirectory)/\(progPin)", ifindex: idx, mode: settings.xdpMode)
        try link.pin(at: "\(pinDirectory)/\(pin)")
    }

    /// Unpinning the link detaches the program (no process holds it open).
    func detachPort(_ interface: String) {
        Files.remove("\(pinDirectory)/\(Self.linkPin(interface))")
    }

    static func write(_ text: String, to path: String) throws { try Files.replace(path, with: text) }

    /// Runs `body` in the instance's writer turn: the one this process has, or one taken
    /// for it (a caller that is not a CLI command, such as `up --policy` or a test).
    func inWriterTurn<T>(_ body: () throws -> T) throws -> T {
        if WriterTurn.isHeldByThisThread(name) { return try body() }
        let turn = try WriterTurn.take(instance: name, doing: "an apply")
        defer { turn?.release() }
        return try body()
    }
}

/// What an apply did (or, with --dry-run, would do).
public struct ApplySummary {
    public var plan: MapPlan
    /// What the maps hold once applied.
    public var images: [PolicyMap: MapImage]
    public var idleRoutes: [(index: Int, why: String)]
    public var attach: [String]
    public var detach: [String]
    public var dryRun: Bool
    public var seconds: Double = 0
    /// The files were what the last apply made live, with nothing written since: the live
    /// maps were not read (ApplyFingerprint).
    public var unchangedSinceLastApply = false

    public var changesNothing: Bool { plan.isEmpty && attach.isEmpty && detach.isEmpty }
}

/// A control-plane failure: what went wrong and what to do about it.
public struct ControlError: Error, CustomStringConvertible {
    public let message: String
    public let hint: String?

    public init(_ message: String, hint: String? = nil) {
        self.message = message
        self.hint = hint
    }

    public var description: String { hint.map { "\(message)\nhint: \($0)" } ?? message }
}
