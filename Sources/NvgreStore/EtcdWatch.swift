import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A watch on every key under a prefix, over etcd's JSON gateway: one POST answered by a
/// chunked stream of JSON objects that never ends. The framing of objects in chunks is not
/// specified (a chunk may hold part of one or several), so the bytes are buffered and cut
/// at the end of each top-level object.
final class EtcdWatch {
    /// One key's change: its new value, or nil when it was deleted.
    struct KeyChange: Equatable {
        let key: String
        let value: Data?
        let revision: Int64
    }

    enum Event: Equatable {
        /// Keys changed; the highest revision among them, and the changes in order.
        case changed(revision: Int64, changes: [KeyChange])
        /// The revision asked for was compacted away: list again.
        case compacted(Int64)
        /// The server ended the watch (its reason).
        case canceled(String)
    }

    private let fd: Int32
    private var chunks = ChunkedDecoder()
    private var headerDone = false
    private var raw: [UInt8] = []
    private var body: [UInt8] = []
    let endpoint: EtcdClient.Endpoint

    /// Opens the watch on the first member that takes a connection.
    init(endpoints: [EtcdClient.Endpoint], prefix: String, from revision: Int64, timeout: Double) throws {
        var failures: [String] = []
        for e in endpoints {
            do {
                let fd = try HTTPExchange.connect(host: e.host, port: e.port, timeout: timeout)
                let request: [String: Any] = [
                    "create_request": [
                        "key": EtcdClient.b64(prefix), "range_end": EtcdClient.prefixEnd(prefix),
                        "start_revision": String(revision)
                    ]
                ]
                let json = try JSONSerialization.data(withJSONObject: request)
                var http = Data(
                    ("POST /v3/watch HTTP/1.1\r\nHost: \(e.host):\(e.port)\r\nContent-Type: application/json\r\n"
                        + "Content-Length: \(json.count)\r\n\r\n").utf8)
                http.append(json)
                do {
                    try HTTPExchange.writeAll(fd, http, to: e.description)
                } catch {
                    close(fd)
                    throw error
                }
                self.fd = fd
                self.endpoint = e
                return
            } catch let StoreError.unreachable(_, why) {
                failures.append("\(e): \(why)")
            }
        }
        throw StoreError.unreachable(
            endpoints.map(\.description).joined(separator: ","), failures.joined(separator: "; "))
    }

    /// A watch with no connection, for feeding bytes to `take` (tests of the parsing).
    init(parsingFor endpoint: EtcdClient.Endpoint) {
        fd = -1
        self.endpoint = endpoint
    }

    deinit { if fd >= 0 { close(fd) } }

    /// The events that arrive within `wait` seconds (none: an empty list). Throws when the
    /// stream broke (the member died, the connection closed).
    func next(wait: Double) throws -> [Event] {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let ready = poll(&p, 1, Int32(wait * 1000))
        if ready < 0 && errno != EINTR {
            throw StoreError.unreachable(endpoint.description, "watch: \(String(cString: strerror(errno)))")
        }
        if ready <= 0 { return [] }
        var buffer = [UInt8](repeating: 0, count: 65536)
        let n = read(fd, &buffer, buffer.count)
        if n <= 0 { throw StoreError.unreachable(endpoint.description, "the watch stream ended") }
        return try take(Array(buffer[0..<n]))
    }

    /// Feeds bytes of the HTTP answer; returns the events of every object completed.
    func take(_ bytes: [UInt8]) throws -> [Event] {
        if !headerDone {
            raw += bytes
            guard let end = HTTPExchange.headerEnd(raw) else { return [] }
            let status = String(decoding: raw[0..<end], as: UTF8.self).split(separator: " ").dropFirst().first
            guard status == "200" else {
                throw StoreError.refused(endpoint.description, "watch answered HTTP \(status ?? "?")")
            }
            headerDone = true
            chunks.feed(Array(raw[(end + 4)...]))
            raw = []
        } else {
            chunks.feed(bytes)
        }
        body += chunks.takeBody()
        var events: [Event] = []
        while let end = Self.objectEnd(body) {
            let object = Array(body[0...end])
            body.removeFirst(end + 1)
            if let event = try Self.event(object) { events.append(event) }
        }
        if chunks.finished && events.isEmpty {
            throw StoreError.unreachable(endpoint.description, "the watch stream ended")
        }
        return events
    }

    /// The index of the `}` closing the first top-level JSON object in `b`, if complete.
    static func objectEnd(_ b: [UInt8]) -> Int? {
        var depth = 0, inString = false, escaped = false, started = false
        for (i, c) in b.enumerated() {
            if inString {
                if escaped {
                    escaped = false
                } else if c == UInt8(ascii: "\\") {
                    escaped = true
                } else if c == UInt8(ascii: "\"") {
                    inString = false
                }
                continue
            }
            switch c {
            case UInt8(ascii: "\""): inString = true
            case UInt8(ascii: "{"):
                depth += 1
                started = true
            case UInt8(ascii: "}"):
                depth -= 1
                if started && depth == 0 { return i }
            default: break
            }
        }
        return nil
    }

    static func event(_ object: [UInt8]) throws -> Event? {
        guard let json = try? JSONSerialization.jsonObject(with: Data(object)) as? [String: Any] else { return nil }
        if let error = json["error"] as? [String: Any] {
            return .canceled((error["message"] as? String) ?? "\(error)")
        }
        guard let result = json["result"] as? [String: Any] else { return nil }
        if let compacted = (result["compact_revision"] as? String).flatMap({ Int64($0) }), compacted > 0 {
            return .compacted(compacted)
        }
        if result["canceled"] as? Bool == true {
            return .canceled((result["cancel_reason"] as? String) ?? "canceled by the server")
        }
        let changes = ((result["events"] as? [[String: Any]]) ?? []).compactMap { e -> KeyChange? in
            guard let kv = e["kv"] as? [String: Any],
                let key = (kv["key"] as? String).flatMap({ Data(base64Encoded: $0) }),
                let revision = (kv["mod_revision"] as? String).flatMap({ Int64($0) })
            else { return nil }
            // A put's value may be absent in the JSON when empty; a delete has none.
            let deleted = (e["type"] as? String) == "DELETE"
            let value = deleted ? nil : (kv["value"] as? String).flatMap { Data(base64Encoded: $0) } ?? Data()
            return KeyChange(key: String(decoding: key, as: UTF8.self), value: value, revision: revision)
        }
        guard let top = changes.map(\.revision).max() else { return nil }  // "created", or progress
        return .changed(revision: top, changes: changes)
    }
}
