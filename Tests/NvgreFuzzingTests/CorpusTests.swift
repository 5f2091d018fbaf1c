import Foundation
import NvgreFuzzing
import Testing

/// Every input committed for the fuzzers (fuzz/corpus/HARNESS: the seeds, and each input a
/// fuzzer found crashing, once fixed) goes through its harness again: none may crash.
@Suite struct CorpusTests {
    static let corpus = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("fuzz/corpus")

    @Test(arguments: FuzzHarness.allCases)
    func everyCommittedInputIsHandled(_ harness: FuzzHarness) throws {
        let dir = Self.corpus.appendingPathComponent(harness.rawValue)
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted()
        #expect(!files.isEmpty, "no corpus in \(dir.path)")
        for name in files {
            let bytes = [UInt8](try Data(contentsOf: dir.appendingPathComponent(name)))
            harness.run(bytes)
        }
    }
}
