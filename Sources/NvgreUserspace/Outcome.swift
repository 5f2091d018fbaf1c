import CNvgre
import NvgreDatapath

/// What the data path does with one frame: the userspace core's answer, and what a test run
/// of the BPF program says, in the same terms.
public enum Verdict: Equatable, Sendable {
    /// Dropped and counted under the reason.
    case drop(nv_drop_reason)
    /// Sent out of interface `egress` (a port, the uplink), as these bytes.
    case forward(egress: UInt32, frame: [UInt8])
    /// Answered: these bytes go back out of the interface the frame came in on.
    case reply(frame: [UInt8])
    /// The host's own traffic (not NVGRE for a local PA): left to the host's stack.
    case pass
    /// Handed to the exception path (the agent) as these bytes, for VSID `vsid`.
    case exception(nv_exception_reason, vsid: UInt32, frame: [UInt8], mtu: UInt32)
    /// From a VM: replicated to `copies` ports and PAs (head-end replication).
    case flood(copies: Int)
    /// From the fabric: decapsulated for the VSID's ports here (these bytes, destination MAC
    /// as the VM sent it).
    case floodUp(vsid: UInt32, frame: [UInt8])
}

/// A counter of the data path, as `nvgre stats` names it.
public enum Counter: Hashable, Sendable {
    case drop(nv_drop_reason)
    case exception(nv_exception_reason)
    /// A per-VSID counter, by its stats slot.
    case vsid(slot: UInt32, nv_vsid_counter)
    /// A gateway's counter (gw_stats).
    case gateway(nv_gw_counter)
    /// A routing domain's counter (domain_stats).
    case domain(rdid: UInt32, nv_domain_counter)
}

/// The verdict and the counters it moved (packets).
public struct Outcome: Equatable, Sendable {
    public var verdict: Verdict
    public var counters: CounterMoves

    public init(_ verdict: Verdict, counters: CounterMoves = [:]) {
        self.verdict = verdict
        self.counters = counters
    }
}

/// The counters one frame moved. A frame moves a few (a drop one, an encapsulation two, a
/// gateway's frame up to four or so): they are kept inline, not in a dictionary per frame;
/// more spill into an array.
public struct CounterMoves: Equatable, Sendable, Sequence, ExpressibleByDictionaryLiteral {
    public typealias Element = (key: Counter, value: UInt64)
    private var first: (Element?, Element?, Element?, Element?) = (nil, nil, nil, nil)
    private var spilled: [Element] = []

    public init() {}

    public init(dictionaryLiteral elements: (Counter, UInt64)...) {
        for (c, n) in elements { add(c, n) }
    }

    public var isEmpty: Bool { first.0 == nil }

    /// Adds `n` to counter `c`.
    public mutating func add(_ c: Counter, _ n: UInt64) {
        func merge(_ slot: inout Element?) -> Bool {
            guard let e = slot else {
                slot = (c, n)
                return true
            }
            guard e.key == c else { return false }
            slot = (c, e.value + n)
            return true
        }
        if merge(&first.0) || merge(&first.1) || merge(&first.2) || merge(&first.3) { return }
        if let i = spilled.firstIndex(where: { $0.key == c }) {
            spilled[i].value += n
        } else {
            spilled.append((c, n))
        }
    }

    public subscript(_ c: Counter) -> UInt64? { first { $0.key == c }?.value }

    public struct Iterator: IteratorProtocol {
        let moves: CounterMoves
        var index = 0

        public mutating func next() -> Element? {
            defer { index += 1 }
            switch index {
            case 0: return moves.first.0
            case 1: return moves.first.1
            case 2: return moves.first.2
            case 3: return moves.first.3
            default: return index - 4 < moves.spilled.count ? moves.spilled[index - 4] : nil
            }
        }
    }

    public func makeIterator() -> Iterator { Iterator(moves: self) }

    /// As a dictionary (for reports and tests).
    public var dictionary: [Counter: UInt64] { Dictionary(map { ($0.key, $0.value) }, uniquingKeysWith: +) }

    public static func == (a: CounterMoves, b: CounterMoves) -> Bool { a.dictionary == b.dictionary }
}
