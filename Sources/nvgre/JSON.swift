import NvgrePolicy

/// A JSON value with keys kept in the order written, so machine output reads like the text
/// output and diffs cleanly.
enum JSON {
    case object([(String, JSON)])
    case array([JSON])
    case string(String)
    case number(UInt64)
    case bool(Bool)
    case null

    func rendered(indent: Int = 0) -> String {
        var out = ""
        render(into: &out, indent: indent)
        return out
    }

    private func render(into out: inout String, indent: Int) {
        let pad = String(repeating: "  ", count: indent + 1), end = String(repeating: "  ", count: indent)
        switch self {
        case let .object(fields):
            if fields.isEmpty {
                out += "{}"
                return
            }
            out += "{\n"
            for (i, (k, v)) in fields.enumerated() {
                out += pad + quote(k) + ": "
                v.render(into: &out, indent: indent + 1)
                out += i + 1 < fields.count ? ",\n" : "\n"
            }
            out += end + "}"
        case let .array(items):
            if items.isEmpty {
                out += "[]"
                return
            }
            // Arrays of scalars stay on one line.
            if items.allSatisfy({
                if case .object = $0 { return false }
                if case .array = $0 { return false }
                return true
            }) {
                out += "[" + items.map { $0.rendered() }.joined(separator: ", ") + "]"
                return
            }
            out += "[\n"
            for (i, v) in items.enumerated() {
                out += pad
                v.render(into: &out, indent: indent + 1)
                out += i + 1 < items.count ? ",\n" : "\n"
            }
            out += end + "]"
        case let .string(s): out += quote(s)
        case let .number(n): out += String(n)
        case let .bool(b): out += b ? "true" : "false"
        case .null: out += "null"
        }
    }

    private func quote(_ s: String) -> String { PolicyWriter.quoted(s) }
}
