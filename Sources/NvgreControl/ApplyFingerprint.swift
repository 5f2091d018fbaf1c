import CNvgre
import Foundation
import NvgreDatapath
import NvgrePolicy

/// What the last `nvgre apply` of policy files left in the maps, so that applying the same
/// files again can say "nothing to change" without reading, validating and compiling a
/// million records and reading as many live entries. It holds for as long as nothing else
/// has written the policy maps: every other writer (an apply from anywhere else, `lookup
/// add|del`, the store's agent) forgets it before it writes, and so does an apply that
/// starts. Everything else the compiled maps depend on is in it and checked: the bytes of
/// the files, this binary and its ABI, the ifindex of every interface the policy names and
/// the host's addresses. `apply --verify` reads every live entry instead.
public struct ApplyFingerprint: Codable, Equatable {
    public var input: String
    public var interfaces: [String: UInt32]
    public var hostAddresses: [String]
    public var idleRoutes: [IdleRoute]

    public struct IdleRoute: Codable, Equatable {
        public var index: Int
        public var why: String
    }

    static let file = "applied.json"
}

extension Instance {
    var fingerprintPath: String { "\(stateDirectory)/\(ApplyFingerprint.file)" }

    /// Called by every writer of the policy maps before it writes.
    public func forgetFingerprint() { unlink(fingerprintPath) }

    /// The summary of "nothing to change" when the files whose digest is `input` are what
    /// the last apply made live and nothing has changed since; nil otherwise.
    public func unchangedSinceLastApply(input: String) -> ApplySummary? {
        guard let data = FileManager.default.contents(atPath: fingerprintPath),
            let last = try? JSONDecoder().decode(ApplyFingerprint.self, from: data), last.input == input,
            last.interfaces.allSatisfy({ existingInterfaceIndex($0.key) == $0.value }),
            last.hostAddresses == Self.hostAddressList()
        else { return nil }
        var summary = ApplySummary(
            plan: MapPlan(live: [:], desired: [:]), images: [:],
            idleRoutes: last.idleRoutes.map { ($0.index, $0.why) }, attach: [], detach: [], dryRun: false)
        summary.unchangedSinceLastApply = true
        return summary
    }

    /// Remembers that the files whose digest is `input` made `policy` live (`summary`).
    public func recordFingerprint(input: String, policy: Policy, summary: ApplySummary) {
        var names = [settings.uplink] + policy.ports.map(\.interface)
        names += policy.externalAddresses.map(\.interface)
        var interfaces: [String: UInt32] = [:]
        for name in names { interfaces[name] = existingInterfaceIndex(name) ?? 0 }
        let print = ApplyFingerprint(
            input: input, interfaces: interfaces, hostAddresses: Self.hostAddressList(),
            idleRoutes: summary.idleRoutes.map { .init(index: $0.index, why: $0.why) })
        guard let data = try? JSONEncoder().encode(print) else { return }
        try? Files.replace(fingerprintPath, with: [UInt8](data))
    }

    static func hostAddressList() -> [String] {
        ((try? interfaceAddresses()) ?? []).map { "\($0.interface) \($0.prefix)" }.sorted()
    }

    /// The digest of policy files as one input: their bytes, and what else decides how they
    /// compile (this executable, the ABI version).
    public static func inputDigest(_ files: [UnsafeRawBufferPointer]) -> String {
        var st = stat()
        let binary = stat("/proc/self/exe", &st) == 0 ? "\(st.st_ino):\(st.st_size):\(st.st_mtim.tv_sec)" : "?"
        var digest = ContentDigest()
        Array("\(binary) abi \(NV_ABI_VERSION) files \(files.count)".utf8).withUnsafeBytes { digest.add($0) }
        for f in files { digest.add(f) }
        return digest.hex
    }
}

/// A 128-bit digest of byte strings for change detection (two multiply-rotate lanes over
/// 8-byte words, taking turns, the length mixed in per string): about 3 GB/s, for 100 MB
/// policy files; not meant to resist someone forging a collision.
struct ContentDigest {
    private var a: UInt64 = 0x9E37_79B9_7F4A_7C15
    private var b: UInt64 = 0xC2B2_AE3D_27D4_EB4F

    mutating func add(_ raw: UnsafeRawBufferPointer) {
        a = mixA(a, UInt64(raw.count))
        let words = raw.count / 8
        var i = 0
        while i + 1 < words {
            a = mixA(a, raw.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self))
            b = mixB(b, raw.loadUnaligned(fromByteOffset: i * 8 + 8, as: UInt64.self))
            i += 2
        }
        var tail: UInt64 = 0
        for j in (i * 8)..<raw.count { tail = tail << 8 | UInt64(raw[j]) }
        b = mixB(b, tail)
        a = mixA(a, b)
    }

    private func mixA(_ h: UInt64, _ w: UInt64) -> UInt64 { ((h ^ w) &* 0x9FB2_1C65_1E98_DF25).rotateLeft(29) }
    private func mixB(_ h: UInt64, _ w: UInt64) -> UInt64 { ((h &+ w) &* 0xFF51_AFD7_ED55_8CCD).rotateLeft(33) }

    var hex: String { String(format: "%016llx%016llx", a, b) }
}

extension UInt64 {
    fileprivate func rotateLeft(_ n: UInt64) -> UInt64 { (self << n) | (self >> (64 - n)) }
}
