import NvgreWire

/// A fast reader for the one part of a policy file that can be huge: the `lookupRecords`
/// list written one record per line as a flow mapping, which is how `nvgre save` writes it:
///
///     lookupRecords:
///       - {vsid: 5001, customerAddress: 198.19.1.1, providerAddress: 198.18.0.1, mac: 02:00:00:00:01:01}
///
/// A general YAML parser needs tens of seconds for a million such lines; this reads them in
/// about one. It accepts only lines it fully understands (known keys, each once, the required
/// ones present, plain or double-quoted scalars without escapes, values that parse). Anything
/// else, anywhere in the section, makes it give up, and the whole file goes to the general
/// parser, which then reports the problem with its path. So both readers always agree.
enum RecordLines {
    /// The records, and the text without the section (for the general parser); nil when
    /// the file does not have such a section or the section has anything unusual.
    static func split(_ text: String) -> (records: [LookupRecord], rest: String)? {
        var bytes = Array(text.utf8)
        let header = Array("lookupRecords:".utf8)
        // Find the top-level header line, exactly once.
        var lineStarts: [Int] = []
        var start = 0
        while start < bytes.count {
            if bytes[start] == header[0], bytes.count - start >= header.count,
               bytes[start..<(start + header.count)].elementsEqual(header) {
                lineStarts.append(start)
            }
            guard let nl = bytes[start...].firstIndex(of: 0x0a) else { break }
            start = nl + 1
        }
        guard lineStarts.count == 1, let headerStart = lineStarts.first else { return nil }
        guard let headerEnd = bytes[headerStart...].firstIndex(of: 0x0a) else { return nil }
        let afterKey = bytes[(headerStart + header.count)..<headerEnd]
        guard isBlankOrComment(afterKey) else { return nil } // `lookupRecords: []` and the like
        // The section: indented lines up to the next line that starts in column 0.
        var records: [LookupRecord] = []
        var line = headerEnd + 1
        var sectionEnd = line
        while line < bytes.count {
            let end = bytes[line...].firstIndex(of: 0x0a) ?? bytes.count
            let content = bytes[line..<end]
            if let first = content.first, first != 0x20, first != 0x23, first != 0x0d { break }
            if !isBlankOrComment(content) {
                guard let r = parseLine(content) else { return nil }
                records.append(r)
            }
            line = end + 1
            sectionEnd = min(line, bytes.count)
        }
        bytes.replaceSubrange(headerStart..<sectionEnd, with: [])
        return (records, String(decoding: bytes, as: UTF8.self))
    }

    private static func isBlankOrComment(_ s: ArraySlice<UInt8>) -> Bool {
        for b in s {
            if b == 0x23 { return true }
            if b != 0x20 && b != 0x09 && b != 0x0d { return false }
        }
        return true
    }

    /// `  - {k: v, k: v}  # comment`
    private static func parseLine(_ s: ArraySlice<UInt8>) -> LookupRecord? {
        var i = s.startIndex
        func skipSpaces() { while i < s.endIndex, s[i] == 0x20 { i += 1 } }
        skipSpaces()
        guard i < s.endIndex, s[i] == 0x2d else { return nil } // -
        i += 1
        skipSpaces()
        guard i < s.endIndex, s[i] == 0x7b else { return nil } // {
        i += 1
        var vsid: UInt32?, ca: IPAddress?, pa: IPAddress?, mac: MACAddress?, type: RecordType?
        while true {
            skipSpaces()
            // key
            let keyStart = i
            while i < s.endIndex, isKeyByte(s[i]) { i += 1 }
            let key = String(decoding: s[keyStart..<i], as: UTF8.self)
            guard i < s.endIndex, s[i] == 0x3a else { return nil } // :
            i += 1
            guard i < s.endIndex, s[i] == 0x20 else { return nil }
            skipSpaces()
            // value: "quoted" or plain up to , or }
            let value: String
            if i < s.endIndex, s[i] == 0x22 {
                i += 1
                let vs = i
                while i < s.endIndex, s[i] != 0x22 {
                    if s[i] == 0x5c { return nil } // escapes: leave to the general parser
                    i += 1
                }
                guard i < s.endIndex else { return nil }
                value = String(decoding: s[vs..<i], as: UTF8.self)
                i += 1
            } else {
                let vs = i
                while i < s.endIndex, s[i] != 0x2c, s[i] != 0x7d {
                    let b = s[i]
                    if b == 0x23 || b == 0x27 || b == 0x22 || b == 0x5b || b == 0x7b || b == 0x5d || b == 0x26 || b == 0x2a {
                        return nil
                    }
                    i += 1
                }
                var ve = i
                while ve > vs, s[ve - 1] == 0x20 { ve -= 1 }
                guard ve > vs else { return nil }
                value = String(decoding: s[vs..<ve], as: UTF8.self)
            }
            switch key {
            case "vsid" where vsid == nil:
                guard let v = UInt32(value), !value.hasPrefix("+") else { return nil }
                vsid = v
            case "customerAddress" where ca == nil:
                guard let v = IPAddress(parsing: value) else { return nil }
                ca = v
            case "providerAddress" where pa == nil:
                guard let v = IPAddress(parsing: value) else { return nil }
                pa = v
            case "mac" where mac == nil:
                guard let v = MACAddress(parsing: value) else { return nil }
                mac = v
            case "type" where type == nil:
                guard let v = RecordType(rawValue: value) else { return nil }
                type = v
            default:
                return nil // unknown or repeated key
            }
            skipSpaces()
            guard i < s.endIndex else { return nil }
            if s[i] == 0x2c { i += 1; continue }
            guard s[i] == 0x7d else { return nil }
            i += 1
            break
        }
        guard isBlankOrComment(s[i...]) else { return nil }
        guard let vsid, let ca, let pa, let mac else { return nil }
        return LookupRecord(vsid: vsid, customerAddress: ca, providerAddress: pa, mac: mac, type: type ?? .staticRecord)
    }

    private static func isKeyByte(_ b: UInt8) -> Bool {
        (b >= 0x61 && b <= 0x7a) || (b >= 0x41 && b <= 0x5a)
    }
}
