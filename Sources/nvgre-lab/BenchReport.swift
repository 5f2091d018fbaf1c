import Foundation
import NvgreLab

/// One figure of `make bench`. A row has a rate (Mpps, and ns per packet as its inverse), a
/// per-packet cost (ns only, for test-run rows) or another figure with its unit; `ratio` is
/// this row against `baseline`, a row of the same run.
struct BenchRow: Codable {
    var section: String
    var name: String
    var mpps: Double?
    var nsPerPacket: Double?
    var value: Double?
    var unit: String?
    var baseline: String?
    var ratio: Double?
    /// Raw material: trial figures, frames sent and delivered, and so on.
    var details: [String: Double] = [:]

    static func rate(_ section: String, _ name: String, mpps: Double, details: [String: Double] = [:]) -> BenchRow {
        BenchRow(section: section, name: name, mpps: mpps, nsPerPacket: mpps > 0 ? 1000 / mpps : nil, details: details)
    }

    static func cost(_ section: String, _ name: String, ns: Double, details: [String: Double] = [:]) -> BenchRow {
        BenchRow(section: section, name: name, nsPerPacket: ns, details: details)
    }

    static func figure(
        _ section: String, _ name: String, _ value: Double, _ unit: String, details: [String: Double] = [:]
    ) -> BenchRow {
        BenchRow(section: section, name: name, value: value, unit: unit, details: details)
    }
}

/// A target of the issue: a ratio between two rows of the same run, and its bound.
struct TargetCheck: Codable {
    enum Bound: String, Codable {
        case atLeast = ">="
        case atMost = "<="
    }
    var what: String
    var row: String
    var baseline: String
    var metric: String
    var ratio: Double
    var bound: Bound
    var limit: Double
    var met: Bool
}

/// The rows of one run, compared, printed, and written as JSON and a PNG chart.
struct BenchReport {
    var rows: [BenchRow] = []
    var targets: [TargetCheck] = []
    var notes: [String] = []

    mutating func add(_ new: [BenchRow]) { rows += new }

    /// Sets `name`'s ratio against `baseline`: Mpps over Mpps for rates (higher is better),
    /// ns over ns for costs, value over value otherwise.
    mutating func compare(_ name: String, to baseline: String) {
        guard let i = rows.firstIndex(where: { $0.name == name }),
            let b = rows.first(where: { $0.name == baseline })
        else { return }
        let r = rows[i]
        let ratio: Double?
        if let m = r.mpps, let bm = b.mpps, bm > 0 {
            ratio = m / bm
        } else if let n = r.nsPerPacket, let bn = b.nsPerPacket, bn > 0 {
            ratio = n / bn
        } else if let v = r.value, let bv = b.value, bv > 0 {
            ratio = v / bv
        } else {
            ratio = nil
        }
        rows[i].baseline = baseline
        rows[i].ratio = ratio
    }

    /// Checks `row` against `baseline` on Mpps (a figure row: on its figure; on ns per packet
    /// with `onCost`).
    mutating func target(
        _ what: String, _ row: String, over baseline: String, _ bound: TargetCheck.Bound, _ limit: Double,
        onCost: Bool = false
    ) {
        guard let r = rows.first(where: { $0.name == row }), let b = rows.first(where: { $0.name == baseline }) else {
            return
        }
        let value: (BenchRow) -> Double? = { onCost ? $0.nsPerPacket : ($0.mpps ?? $0.value) }
        guard let v = value(r), let bv = value(b), bv > 0 else { return }
        let ratio = v / bv
        targets.append(
            TargetCheck(
                what: what, row: row, baseline: baseline,
                metric: onCost ? "ns/packet" : (r.mpps == nil ? r.unit ?? "" : "Mpps"),
                ratio: ratio,
                bound: bound, limit: limit, met: bound == .atLeast ? ratio >= limit : ratio <= limit))
    }

    /// Checks a figure row against an absolute bound (seconds, MB): the "ratio" is the figure.
    mutating func targetFigure(
        _ what: String, _ row: String, _ bound: TargetCheck.Bound, _ limit: Double, _ unit: String
    ) {
        guard let r = rows.first(where: { $0.name == row }), let v = r.value else { return }
        targets.append(
            TargetCheck(
                what: what, row: row, baseline: "", metric: unit, ratio: v, bound: bound, limit: limit,
                met: bound == .atLeast ? v >= limit : v <= limit))
    }

    func printTable() {
        var section = ""
        for r in rows {
            if r.section != section {
                section = r.section
                print("\n\(section)")
                print(
                    "  " + pad("row", 40) + pad("Mpps", 8, right: true) + pad("ns/pkt", 9, right: true)
                        + pad("figure", 14, right: true) + "  " + pad("ratio", 7, right: true) + "  baseline")
            }
            var line = "  " + pad(r.name, 40)
            line += pad(r.mpps.map { String(format: "%.2f", $0) } ?? "", 8, right: true)
            line += pad(r.nsPerPacket.map { String(format: "%.1f", $0) } ?? "", 9, right: true)
            line += pad(r.value.map { String(format: "%.3g %@", $0, r.unit ?? "") } ?? "", 14, right: true)
            line += "  " + pad(r.ratio.map { String(format: "%.2f", $0) } ?? "", 7, right: true)
            if let b = r.baseline { line += "  vs \(b)" }
            print(line)
        }
        if !targets.isEmpty {
            print("\ntargets (ratios of this run, or figures where no baseline is named)")
            for t in targets {
                print(
                    "  " + pad(t.what, 40) + pad(String(format: "%.2f", t.ratio), 7, right: true)
                        + "  \(t.bound.rawValue) \(t.limit)  " + (t.met ? "met   " : "MISSED")
                        + (t.baseline.isEmpty ? "  \(t.row) (\(t.metric))" : "  \(t.row) / \(t.baseline) (\(t.metric))")
                )
            }
        }
        for n in notes { print("note: \(n)") }
    }

    private func pad(_ s: String, _ n: Int, right: Bool = false) -> String {
        s.count >= n
            ? s
            : (right ? String(repeating: " ", count: n - s.count) + s : s + String(repeating: " ", count: n - s.count))
    }

    func writeJSON(to path: String, settings: [String: String]) throws {
        struct Document: Encodable {
            let machine: [String: String]
            let settings: [String: String]
            let rows: [BenchRow]
            let targets: [TargetCheck]
            let notes: [String]
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let doc = Document(machine: Self.machine(), settings: settings, rows: rows, targets: targets, notes: notes)
        try encoder.encode(doc).write(to: URL(fileURLWithPath: path))
    }

    /// A horizontal bar chart of the Mpps rows, drawn by gnuplot.
    func writeChart(to path: String, title: String) throws {
        let rated = rows.filter { $0.mpps != nil }
        guard !rated.isEmpty else { return }
        let dir = NSTemporaryDirectory()
        let data = dir + "bench-chart.dat", script = dir + "bench-chart.gp"
        defer {
            unlink(data)
            unlink(script)
        }
        // Top to bottom in report order: gnuplot's y axis grows upwards.
        var text = ""
        for (i, r) in rated.enumerated().reversed() {
            text += "\(rated.count - 1 - i) \"\(r.name.replacingOccurrences(of: "\"", with: "'"))\" \(r.mpps!)\n"
        }
        try text.write(toFile: data, atomically: false, encoding: .utf8)
        let height = 120 + 26 * rated.count
        try """
        set terminal pngcairo size 1000,\(height) font "sans,10" noenhanced
        set output "\(path)"
        set title "\(title)"
        set xlabel "Mpps (64-byte frames)"
        set style fill solid 0.8 border -1
        set ytics nomirror
        set grid xtics
        set xrange [0:*]
        set yrange [-0.6:\(Double(rated.count) - 0.4)]
        set offsets 0, graph 0.12, 0, 0
        unset key
        plot "\(data)" using 3:1:(0):3:($1-0.35):($1+0.35):ytic(2) with boxxyerror lc rgb "#3a7bd5", \\
             "\(data)" using 3:1:(sprintf(" %.2f", $3)) with labels left offset 0.5,0
        """.write(toFile: script, atomically: false, encoding: .utf8)
        let r = try Spawn.run(["/usr/bin/gnuplot", script])
        guard r.status == 0 else { throw ShellErrorText("gnuplot failed: \(r.output)") }
    }

    /// What the figures were measured on.
    static func machine() -> [String: String] {
        var m: [String: String] = [:]
        var u = utsname()
        uname(&u)
        func text<T>(_ field: T) -> String {
            withUnsafeBytes(of: field) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
        }
        m["kernel"] = text(u.release)
        m["architecture"] = text(u.machine)
        m["onlineCPUs"] = String(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        if let line = cpuinfo.split(separator: "\n").first(where: { $0.hasPrefix("model name") }) {
            m["cpuModel"] = line.split(separator: ":", maxSplits: 1).last.map {
                $0.trimmingCharacters(in: .whitespaces)
            }
        }
        let meminfo = (try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8)) ?? ""
        if let line = meminfo.split(separator: "\n").first(where: { $0.hasPrefix("MemTotal") }) {
            m["memory"] = line.split(separator: ":", maxSplits: 1).last.map { $0.trimmingCharacters(in: .whitespaces) }
        }
        let os = (try? String(contentsOfFile: "/etc/os-release", encoding: .utf8)) ?? ""
        if let line = os.split(separator: "\n").first(where: { $0.hasPrefix("PRETTY_NAME=") }) {
            m["os"] = String(line.dropFirst("PRETTY_NAME=".count)).trimmingCharacters(
                in: CharacterSet(charactersIn: "\""))
        }
        m["date"] = ISO8601DateFormatter().string(from: Date())
        return m
    }
}
