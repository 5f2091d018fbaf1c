import CNvgre
import Foundation
import NvgreDatapath

/// What an apply under way would have to undo, kept in the state directory from before its
/// first write until it commits. An apply killed half-way (kill -9, a crash) leaves it
/// behind; the next process that opens the instance while no writer runs puts everything
/// back as it was (`Instance.recoverInterruptedApply`), so the instance holds the old
/// policy or the new one whole, never a mix.
///
/// The undo of every step is idempotent (restore an old value, delete a key that may not
/// have been written), so the whole journal is undone whatever the apply had reached. The
/// apply commits by renaming the journal to `committedFile`; a journal found under that
/// name only has the apply's last step (detaching ports it no longer wants) left to do.
struct ApplyJournal {
    static let file = "apply.journal"
    static let committedFile = "apply.journal.committed"

    /// Per map: entries to put back (removed or changed: key and old value), keys to delete
    /// (added).
    var restore: [PolicyMap: [(key: RawBytes, value: RawBytes)]] = [:]
    var delete: [PolicyMap: [RawBytes]] = [:]
    /// Maps that were empty before: undone by emptying them (a first apply of a million
    /// records journals no key).
    var empty: Set<PolicyMap> = []
    var floodListsBefore: [UInt32: nv_flood_list] = [:]
    /// Link pins the apply creates (ports and an external interface it attaches).
    var newLinkPins: [String] = []
    /// The stored policy (without records) before the apply.
    var storedPolicyBefore = ""
    /// Who wrote it, for the message of the process that recovers.
    var writer = ""

    private static let magic = Array("nvgre apply journal 1\n".utf8)

    /// Writes the journal for `plan` straight to `path` (through `path.new`, renamed when
    /// complete, so a journal is whole or absent), streamed: a million records' undo never
    /// sits in memory twice.
    static func write(
        plan: MapPlan, floodListsBefore: [UInt32: nv_flood_list], newLinkPins: [String], storedPolicyBefore: String,
        writer: String, to path: String
    ) throws {
        var out = try JournalOutput(path: path + ".new")
        out.bytes(magic)
        out.string(writer)
        out.string(storedPolicyBefore)
        out.u32(UInt32(newLinkPins.count))
        for pin in newLinkPins { out.string(pin) }
        out.u32(UInt32(floodListsBefore.count))
        for (vsid, list) in floodListsBefore {
            out.u32(vsid)
            withUnsafeBytes(of: list) { out.raw($0) }
        }
        let maps = PolicyMap.allCases.filter { !(plan.changes[$0]?.isEmpty ?? true) }
        out.u32(UInt32(maps.count))
        for m in maps {
            guard let c = plan.changes[m] else { continue }
            out.string(m.rawValue)
            if c.liveWasEmpty {
                out.bytes([1])
                continue
            }
            out.bytes([0])
            out.u32(UInt32(c.removed.count + c.changed.count))
            for e in c.removed { out.entry(e.key, e.old) }
            for e in c.changed { out.entry(e.key, e.old) }
            out.u32(UInt32(c.total - c.removed.count - c.changed.count))
            for k in c.addedKeys { out.rawBytes(k) }
        }
        try out.finish()
        if rename(path + ".new", path) != 0 { throw DatapathError("write \(path)", errno: errno) }
    }

    /// Reads a journal back; nil when it cannot be read whole.
    init?(path: String) {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        var input = JournalInput(bytes: [UInt8](data))
        guard input.bytes(Self.magic.count) == Self.magic, let writer = input.string(),
            let stored = input.string(), let pins = input.u32()
        else { return nil }
        self.writer = writer
        storedPolicyBefore = stored
        for _ in 0..<pins {
            guard let pin = input.string() else { return nil }
            newLinkPins.append(pin)
        }
        guard let lists = input.u32() else { return nil }
        for _ in 0..<lists {
            guard let vsid = input.u32(), let raw = input.bytes(MemoryLayout<nv_flood_list>.size) else { return nil }
            floodListsBefore[vsid] = raw.withUnsafeBytes { $0.loadUnaligned(as: nv_flood_list.self) }
        }
        guard let maps = input.u32() else { return nil }
        for _ in 0..<maps {
            guard let name = input.string(), let m = PolicyMap(rawValue: name), let mode = input.bytes(1) else {
                return nil
            }
            if mode == [1] {
                empty.insert(m)
                continue
            }
            guard let n = input.u32() else { return nil }
            var back: [(key: RawBytes, value: RawBytes)] = []
            for _ in 0..<n {
                guard let k = input.rawBytes(), let v = input.rawBytes() else { return nil }
                back.append((k, v))
            }
            guard let added = input.u32() else { return nil }
            var keys: [RawBytes] = []
            for _ in 0..<added {
                guard let k = input.rawBytes() else { return nil }
                keys.append(k)
            }
            restore[m] = back
            delete[m] = keys
        }
        guard input.atEnd else { return nil }
    }
}

/// A buffered file written in one pass.
private struct JournalOutput {
    private let fd: Int32
    private let path: String
    private var buffer: [UInt8] = []
    private var failed: Int32 = 0

    init(path: String) throws {
        self.path = path
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        if fd < 0 { throw DatapathError("write \(path)", errno: errno) }
        buffer.reserveCapacity(1 << 20)
    }

    mutating func bytes(_ b: [UInt8]) {
        buffer.append(contentsOf: b)
        flushIfFull()
    }

    mutating func raw(_ b: UnsafeRawBufferPointer) {
        buffer.append(contentsOf: b)
        flushIfFull()
    }

    mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { raw($0) } }

    mutating func string(_ s: String) {
        let utf8 = Array(s.utf8)
        u32(UInt32(utf8.count))
        bytes(utf8)
    }

    mutating func rawBytes(_ r: RawBytes) {
        buffer.append(UInt8(r.count))
        r.withBytes { raw($0) }
    }

    mutating func entry(_ k: RawBytes, _ v: RawBytes) {
        rawBytes(k)
        rawBytes(v)
    }

    private mutating func flushIfFull() {
        if buffer.count >= 1 << 20 { flush() }
    }

    private mutating func flush() {
        if failed == 0, !buffer.isEmpty {
            let n = buffer.withUnsafeBytes { Foundation.write(fd, $0.baseAddress, $0.count) }
            if n != buffer.count { failed = n < 0 ? errno : EIO }
        }
        buffer.removeAll(keepingCapacity: true)
    }

    mutating func finish() throws {
        flush()
        close(fd)
        if failed != 0 {
            unlink(path)
            throw DatapathError("write \(path)", errno: failed)
        }
    }
}

/// Reads what JournalOutput wrote; every read is nil past the end.
private struct JournalInput {
    let bytes: [UInt8]
    var at = 0

    var atEnd: Bool { at == bytes.count }

    mutating func bytes(_ n: Int) -> [UInt8]? {
        guard n >= 0, at + n <= bytes.count else { return nil }
        defer { at += n }
        return Array(bytes[at..<at + n])
    }

    mutating func u32() -> UInt32? {
        guard let b = bytes(4) else { return nil }
        return UInt32(b[0]) | UInt32(b[1]) << 8 | UInt32(b[2]) << 16 | UInt32(b[3]) << 24
    }

    mutating func string() -> String? {
        guard let n = u32(), let b = bytes(Int(n)) else { return nil }
        return String(decoding: b, as: UTF8.self)
    }

    mutating func rawBytes() -> RawBytes? {
        guard let n = bytes(1), Int(n[0]) <= RawBytes.capacity, let b = bytes(Int(n[0])) else { return nil }
        return b.withUnsafeBytes { RawBytes($0) }
    }
}

extension Instance {
    var journalPath: String { "\(stateDirectory)/\(ApplyJournal.file)" }
    var committedJournalPath: String { "\(stateDirectory)/\(ApplyJournal.committedFile)" }

    /// Finishes or undoes an apply that was killed half-way, when no writer runs now (this
    /// process has the instance's turn, or gets it at once): one whose journal is there
    /// while nobody has the turn was killed. Returns what it did; nil when there was nothing
    /// to do or a writer is at work.
    public func recoverInterruptedApply() -> String? {
        guard Files.exists(journalPath) || Files.exists(committedJournalPath) else { return nil }
        var turn: WriterTurn?
        if !WriterTurn.isHeldByThisThread(name) {
            guard let t = try? WriterTurn.take(instance: name, doing: "nvgre recovering an apply", wait: 0) else {
                return nil
            }
            turn = t
        }
        defer { turn?.release() }
        if Files.exists(committedJournalPath) {
            // Committed: only detaching what the policy no longer has was left.
            if let stored = try? storedPolicy() {
                let wanted = Set(stored.ports.map(\.interface))
                for port in attachedPorts() where !wanted.contains(port) { detachPort(port) }
                if let ext = attachedExternal(), ext != stored.externalAddresses.first?.interface {
                    Files.remove("\(pinDirectory)/\(Self.externalLinkPin(ext))")
                }
            }
            Files.remove(committedJournalPath)
            return "an apply was interrupted after it took effect; its last step (detaching ports) is done"
        }
        guard let journal = ApplyJournal(path: journalPath) else {
            if !Files.exists(journalPath) { return nil }
            rename(journalPath, journalPath + ".damaged")
            return "an interrupted apply left a journal that cannot be read (kept as \(journalPath).damaged): "
                + "the maps may hold part of it; `nvgre apply --verify` the policy you want"
        }
        var problems: [String] = []
        // Its additions go first, dependents first; then what it removed or changed comes
        // back, what others depend on first (MapPlan's orders).
        for m in MapPlan.removalOrder + [.config] {
            do {
                if journal.empty.contains(m) {
                    try maps.raw(m).rawDelete(try maps.raw(m).rawEntries().map(\.key))
                } else if let keys = journal.delete[m], !keys.isEmpty {
                    try maps.raw(m).rawDelete(keys)
                }
            } catch {
                problems.append("\(error)")
            }
        }
        for m in MapPlan.writeOrder {
            guard let entries = journal.restore[m], !entries.isEmpty else { continue }
            do { try maps.raw(m).rawUpdate(entries[...]) } catch { problems.append("\(error)") }
        }
        do { try replaceFloodLists(with: journal.floodListsBefore) } catch { problems.append("\(error)") }
        for pin in journal.newLinkPins { Files.remove("\(pinDirectory)/\(pin)") }
        if !journal.storedPolicyBefore.isEmpty {
            do { try Self.write(journal.storedPolicyBefore, to: storedPolicyPath) } catch {
                problems.append("\(error)")
            }
        }
        forgetFingerprint()
        guard problems.isEmpty else {
            return
                "an apply by \(journal.writer) was interrupted; undoing it failed (\(problems.joined(separator: "; "))), "
                + "the next process that opens the instance tries again"
        }
        Files.remove(journalPath)
        return "an apply by \(journal.writer) was interrupted; the instance is back to the policy before it"
    }
}
