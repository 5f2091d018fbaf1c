// The libFuzzer entry point, linked only into the fuzzers `scripts/fuzz.sh` builds (libFuzzer
// brings its own main). $NVGRE_FUZZ names the harness (FuzzHarness).
import Foundation
import NvgreFuzzing

let harness: FuzzHarness = {
    let name = ProcessInfo.processInfo.environment["NVGRE_FUZZ"] ?? ""
    guard let h = FuzzHarness(rawValue: name) else {
        fatalError("NVGRE_FUZZ must name a harness: \(FuzzHarness.allCases.map(\.rawValue))")
    }
    return h
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func testOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    harness.run(data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? [])
    return 0
}
