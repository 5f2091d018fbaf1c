import Dispatch
import NvgreWire
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A fast reader for the one part of a policy file that can be huge: the `lookupRecords`
/// list written one record per line as a flow mapping, which is how `nvgre save` writes it:
///
///     lookupRecords:
///       - {vsid: 5001, customerAddress: 198.19.1.1, providerAddress: 198.18.0.1, mac: 02:00:00:00:01:01}
///
/// or, in JSON (`save --format json`), one object per line in the `"lookupRecords": [` array:
///
///     "lookupRecords": [
///       {"vsid": 5001, "customerAddress": "198.19.1.1", "providerAddress": "198.18.0.1", ...},
///       ...
///     ],
///
/// A general YAML parser needs tens of seconds for a million such lines; this reads them in
/// about one. It accepts only lines it fully understands (known keys, each once, the required
/// ones present, plain or double-quoted scalars without escapes, values that parse). Anything
/// else, anywhere in the section, makes it give up, and the whole file goes to the general
/// parser, which then reports the problem with its path. So both readers always agree.
enum RecordLines {
    /// The records, and the text without the section (for the general parser); nil when
    /// the file does not have such a section or the section has anything unusual.
    static func split(_ bytes: [UInt8]) -> (records: [LookupRecord], rest: String)? {
        guard bytes.count < Int(Int32.max) else { return nil }  // line offsets are 32-bit
        let header = Array("lookupRecords:".utf8)
        // Every line's end (memchr), in one pass over what may be 100 MB.
        var ends: [Int32] = []
        ends.reserveCapacity(bytes.count / 64 + 16)
        bytes.withUnsafeBytes { raw in
            var at = 0
            while at < raw.count {
                guard let nl = memchr(raw.baseAddress! + at, 0x0a, raw.count - at) else { break }
                let i = raw.baseAddress!.distance(to: UnsafeRawPointer(nl))
                ends.append(Int32(i))
                at = i + 1
            }
        }
        if ends.last.map({ Int($0) != bytes.count - 1 }) ?? !bytes.isEmpty { ends.append(Int32(bytes.count)) }
        func lineStart(_ k: Int) -> Int { k == 0 ? 0 : Int(ends[k - 1]) + 1 }
        // The top-level header line, exactly once.
        var headerLine: Int?
        for k in ends.indices {
            let start = lineStart(k)
            guard Int(ends[k]) - start >= header.count, bytes[start] == header[0],
                bytes[start..<(start + header.count)].elementsEqual(header)
            else { continue }
            if headerLine != nil { return nil }
            headerLine = k
        }
        guard let headerLine else { return splitJSON(bytes, ends) }
        guard Int(ends[headerLine]) < bytes.count else { return nil }
        let headerStart = lineStart(headerLine), headerEnd = Int(ends[headerLine])
        let afterKey = bytes[(headerStart + header.count)..<headerEnd]
        guard isBlankOrComment(afterKey) else { return nil }  // `lookupRecords: []` and the like
        // The section: indented lines up to the next line that starts in column 0. First
        // where each record line is, then the lines parsed on two threads into one array.
        var lines: [(start: Int32, end: Int32)] = []
        lines.reserveCapacity(ends.count - headerLine)
        var sectionEnd = headerEnd + 1
        for k in (headerLine + 1)..<ends.count {
            let line = lineStart(k), end = Int(ends[k])
            let content = bytes[line..<end]
            if let first = content.first, first != 0x20, first != 0x23, first != 0x0d { break }
            if !isBlankOrComment(content) { lines.append((Int32(line), Int32(end))) }
            sectionEnd = min(end + 1, bytes.count)
        }
        guard let records = parseLines(bytes, lines, json: false) else { return nil }
        let rest =
            String(decoding: bytes[..<headerStart], as: UTF8.self)
            + String(decoding: bytes[sectionEnd...], as: UTF8.self)
        return (records, rest)
    }

    /// The JSON form: a line `"lookupRecords": [` (once), then one object per line, each but
    /// the last followed by a comma, up to a line `]` or `],`. The rest is the document with
    /// an empty array in their place.
    private static func splitJSON(_ bytes: [UInt8], _ ends: [Int32]) -> (records: [LookupRecord], rest: String)? {
        let header = Array("\"lookupRecords\": [".utf8)
        func lineStart(_ k: Int) -> Int { k == 0 ? 0 : Int(ends[k - 1]) + 1 }
        func trimmed(_ k: Int) -> ArraySlice<UInt8> {
            var a = lineStart(k), b = Int(ends[k])
            while a < b, bytes[a] == 0x20 || bytes[a] == 0x09 { a += 1 }
            while b > a, bytes[b - 1] == 0x20 || bytes[b - 1] == 0x09 || bytes[b - 1] == 0x0d { b -= 1 }
            return bytes[a..<b]
        }
        var headerLine: Int?
        for k in ends.indices where trimmed(k).elementsEqual(header) {
            if headerLine != nil { return nil }
            headerLine = k
        }
        guard let headerLine else { return nil }
        var lines: [(start: Int32, end: Int32)] = []
        lines.reserveCapacity(ends.count - headerLine)
        var closing: (line: Int, comma: Bool)?
        for k in (headerLine + 1)..<ends.count {
            let t = trimmed(k)
            if t.elementsEqual([0x5d]) || t.elementsEqual([0x5d, 0x2c]) {  // ] or ],
                closing = (k, t.count == 2)
                break
            }
            // Each record but the last ends with a comma, which the record's text excludes.
            guard let last = t.last else { return nil }
            lines.append((Int32(t.startIndex), Int32(last == 0x2c ? t.endIndex - 1 : t.endIndex)))
        }
        guard let closing, !lines.isEmpty else { return nil }
        for (n, l) in lines.enumerated() {
            let comma = Int(l.end) < bytes.count && bytes[Int(l.end)] == 0x2c
            guard comma == (n < lines.count - 1) else { return nil }
        }
        guard let records = parseLines(bytes, lines, json: true) else { return nil }
        let headerAt = trimmed(headerLine).startIndex
        let rest =
            String(decoding: bytes[..<headerAt], as: UTF8.self) + "\"lookupRecords\": []" + (closing.comma ? "," : "")
            + String(decoding: bytes[min(Int(ends[closing.line]), bytes.count)...], as: UTF8.self)
        return (records, rest)
    }

    /// Every line parsed, in order (two threads, each filling its half of one array); nil
    /// when any line is not one the reader fully understands.
    private static func parseLines(_ bytes: [UInt8], _ lines: [(start: Int32, end: Int32)], json: Bool)
        -> [LookupRecord]?
    {
        let n = lines.count
        let halves = n >= 100_000 ? 2 : 1
        let half = (n + 1) / 2
        let failed = Atomic<Bool>(false)
        let records = [LookupRecord](unsafeUninitializedCapacity: n) { buffer, count in
            // LookupRecord holds only plain values: slots left unwritten on failure need no cleanup.
            DispatchQueue.concurrentPerform(iterations: halves) { h in
                let range = halves == 1 ? 0..<n : (h == 0 ? 0..<half : half..<n)
                for k in range {
                    guard let r = parseLine(bytes[Int(lines[k].start)..<Int(lines[k].end)], json: json) else {
                        failed.store(true, ordering: .relaxed)
                        return
                    }
                    (buffer.baseAddress! + k).initialize(to: r)
                }
            }
            count = failed.load(ordering: .relaxed) ? 0 : n
        }
        return records.count == n ? records : nil
    }

    private static func isBlankOrComment(_ s: ArraySlice<UInt8>) -> Bool {
        for b in s {
            if b == 0x23 { return true }
            if b != 0x20 && b != 0x09 && b != 0x0d { return false }
        }
        return true
    }

    /// `  - {k: v, k: v}  # comment`, or in JSON `{"k": v, "k": v}`
    private static func parseLine(_ s: ArraySlice<UInt8>, json: Bool) -> LookupRecord? {
        var i = s.startIndex
        func skipSpaces() { while i < s.endIndex, s[i] == 0x20 { i += 1 } }
        skipSpaces()
        if !json {
            guard i < s.endIndex, s[i] == 0x2d else { return nil }  // -
            i += 1
            skipSpaces()
        }
        guard i < s.endIndex, s[i] == 0x7b else { return nil }  // {
        i += 1
        var vsid: UInt32?, ca: IPAddress?, pa: IPAddress?, mac: MACAddress?, type: RecordType?
        while true {
            skipSpaces()
            if json {
                guard i < s.endIndex, s[i] == 0x22 else { return nil }  // a key is "quoted"
                i += 1
            }
            let keyStart = i
            while i < s.endIndex, isKeyByte(s[i]) { i += 1 }
            let key = s[keyStart..<i]
            if json {
                guard i < s.endIndex, s[i] == 0x22 else { return nil }
                i += 1
            }
            guard i < s.endIndex, s[i] == 0x3a else { return nil }  // :
            i += 1
            guard i < s.endIndex, s[i] == 0x20 else { return nil }
            skipSpaces()
            // value: "quoted" (no escapes) or plain, up to , or }
            let value: ArraySlice<UInt8>
            if i < s.endIndex, s[i] == 0x22 {
                i += 1
                let vs = i
                while i < s.endIndex, s[i] != 0x22 {
                    if s[i] == 0x5c { return nil }  // escapes: leave to the general parser
                    i += 1
                }
                guard i < s.endIndex else { return nil }
                value = s[vs..<i]
                i += 1
            } else {
                let vs = i
                while i < s.endIndex, s[i] != 0x2c, s[i] != 0x7d {
                    let b = s[i]
                    if b == 0x23 || b == 0x27 || b == 0x22 || b == 0x5b || b == 0x7b || b == 0x5d || b == 0x26
                        || b == 0x2a
                    {
                        return nil
                    }
                    i += 1
                }
                var ve = i
                while ve > vs, s[ve - 1] == 0x20 { ve -= 1 }
                guard ve > vs else { return nil }
                value = s[vs..<ve]
            }
            if key.elementsEqual(Key.vsid), vsid == nil {
                guard let v = decimal(value) else { return nil }
                vsid = v
            } else if key.elementsEqual(Key.customerAddress), ca == nil {
                guard let v = address(value) else { return nil }
                ca = v
            } else if key.elementsEqual(Key.providerAddress), pa == nil {
                guard let v = address(value) else { return nil }
                pa = v
            } else if key.elementsEqual(Key.mac), mac == nil {
                guard let v = macAddress(value) else { return nil }
                mac = v
            } else if key.elementsEqual(Key.type), type == nil {
                guard let v = RecordType(rawValue: String(decoding: value, as: UTF8.self)) else { return nil }
                type = v
            } else {
                return nil  // unknown or repeated key
            }
            skipSpaces()
            guard i < s.endIndex else { return nil }
            if s[i] == 0x2c {
                i += 1
                continue
            }
            guard s[i] == 0x7d else { return nil }
            i += 1
            break
        }
        guard isBlankOrComment(s[i...]) else { return nil }
        guard let vsid, let ca, let pa, let mac else { return nil }
        return LookupRecord(vsid: vsid, customerAddress: ca, providerAddress: pa, mac: mac, type: type ?? .staticRecord)
    }

    enum Key {
        static let vsid = Array("vsid".utf8), customerAddress = Array("customerAddress".utf8)
        static let providerAddress = Array("providerAddress".utf8), mac = Array("mac".utf8), type = Array("type".utf8)
    }

    /// Digits only, as UInt32("...") reads them.
    static func decimal(_ s: ArraySlice<UInt8>) -> UInt32? {
        guard !s.isEmpty, s.count <= 10 else { return nil }
        var v: UInt64 = 0
        for b in s {
            guard b >= 0x30 && b <= 0x39 else { return nil }
            v = v * 10 + UInt64(b - 0x30)
        }
        return v <= UInt64(UInt32.max) ? UInt32(v) : nil
    }

    /// Plain dotted-quad IPv4 is read here; anything else (IPv6, odd forms) by inet_pton
    /// through IPAddress(parsing:), so both readers accept exactly the same text.
    static func address(_ s: ArraySlice<UInt8>) -> IPAddress? {
        var out = [UInt8](), part = 0, digits = 0
        out.reserveCapacity(4)
        for b in s {
            if b == 0x2e {
                guard digits > 0, out.count < 3 else { return IPAddress(parsing: String(decoding: s, as: UTF8.self)) }
                out.append(UInt8(part))
                part = 0
                digits = 0
            } else if b >= 0x30 && b <= 0x39, !(digits == 1 && part == 0) {
                part = part * 10 + Int(b - 0x30)
                digits += 1
                if part > 255 { return nil }
            } else {
                return IPAddress(parsing: String(decoding: s, as: UTF8.self))
            }
        }
        guard digits > 0, out.count == 3 else { return IPAddress(parsing: String(decoding: s, as: UTF8.self)) }
        out.append(UInt8(part))
        return IPAddress(v4: out)
    }

    /// aa:bb:cc:dd:ee:ff with hex digits only; other forms go to MACAddress(parsing:).
    static func macAddress(_ s: ArraySlice<UInt8>) -> MACAddress? {
        func hex(_ b: UInt8) -> UInt8? {
            switch b {
            case 0x30...0x39: return b - 0x30
            case 0x61...0x66: return b - 0x61 + 10
            case 0x41...0x46: return b - 0x41 + 10
            default: return nil
            }
        }
        var out = [UInt8]()
        out.reserveCapacity(6)
        var i = s.startIndex
        while out.count < 6, i + 1 < s.endIndex, let h = hex(s[i]), let l = hex(s[i + 1]) {
            out.append(h << 4 | l)
            i += 2
            if out.count < 6 {
                guard i < s.endIndex, s[i] == 0x3a else { break }
                i += 1
            }
        }
        if out.count == 6 && i == s.endIndex { return MACAddress(out) }
        return MACAddress(parsing: String(decoding: s, as: UTF8.self))
    }

    private static func isKeyByte(_ b: UInt8) -> Bool {
        (b >= 0x61 && b <= 0x7a) || (b >= 0x41 && b <= 0x5a)
    }
}
