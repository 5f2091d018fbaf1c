import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// How the store's TCP sockets are made. By default in the calling thread's network
/// namespace; a command that moved into a host's namespace (`nvgre -n`) makes them in the
/// one it started in, where the store is reachable.
public enum StoreSockets {
    nonisolated(unsafe) public static var open: @Sendable (_ family: Int32, _ type: Int32) -> Int32 = {
        socket($0, $1, 0)
    }
}

/// One HTTP/1.1 request to a host on the network and its whole response, over a plain TCP
/// connection that is closed afterwards: what etcd's JSON gateway needs for every call but
/// a watch (EtcdWatch reads that one as a stream). Blocking, with a deadline.
struct HTTPExchange {
    let host: String
    let port: UInt16
    let timeout: Double

    struct Response {
        let status: Int
        let body: Data
    }

    /// Why an exchange failed: before the request left (nothing happened: another member
    /// may be asked), or after (the store may have acted on it).
    enum Failure: Error {
        case beforeSending(String)
        case afterSending(String)
    }

    /// POSTs `body` (JSON) to `path`; throws Failure when no connection or no complete
    /// answer came within the timeout.
    func post(_ path: String, body: Data) throws -> Response {
        let fd: Int32
        do {
            fd = try HTTPExchange.connect(host: host, port: port, timeout: timeout)
        } catch let StoreError.unreachable(_, why) {
            throw Failure.beforeSending(why)
        }
        defer { close(fd) }
        do {
            return try exchange(fd, path, body)
        } catch let StoreError.unreachable(_, why) {
            throw Failure.afterSending(why)
        }
    }

    private func exchange(_ fd: Int32, _ path: String, _ body: Data) throws -> Response {
        var request = Data(
            ("POST \(path) HTTP/1.1\r\nHost: \(host):\(port)\r\nContent-Type: application/json\r\n"
                + "Content-Length: \(body.count)\r\nConnection: close\r\n\r\n").utf8)
        request.append(body)
        try HTTPExchange.writeAll(fd, request, to: "\(host):\(port)")
        var received = Data()
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(fd, &chunk, chunk.count)
            if n == 0 { break }
            if n < 0 {
                if errno == EINTR { continue }
                throw StoreError.unreachable(
                    "\(host):\(port)", "no answer within \(timeout) s (\(String(cString: strerror(errno))))")
            }
            received.append(contentsOf: chunk[0..<n])
        }
        return try HTTPExchange.parse(received, from: "\(host):\(port)")
    }

    /// A connected TCP socket with send and receive timeouts of `timeout` seconds.
    static func connect(host: String, port: UInt16, timeout: Double) throws -> Int32 {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &list)
        guard rc == 0, let first = list else {
            throw StoreError.unreachable(
                "\(host):\(port)", "cannot resolve \(host): \(String(cString: gai_strerror(rc)))")
        }
        defer { freeaddrinfo(list) }
        var lastError = ECONNREFUSED
        var entry: UnsafeMutablePointer<addrinfo>? = first
        while let a = entry {
            entry = a.pointee.ai_next
            let fd = StoreSockets.open(a.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue))
            if fd < 0 {
                lastError = errno
                continue
            }
            var tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - Double(Int(timeout))) * 1e6))
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            if Glibc.connect(fd, a.pointee.ai_addr, a.pointee.ai_addrlen) == 0 { return fd }
            lastError = errno
            close(fd)
        }
        throw StoreError.unreachable("\(host):\(port)", String(cString: strerror(lastError)))
    }

    static func writeAll(_ fd: Int32, _ data: Data, to peer: String) throws {
        try data.withUnsafeBytes { raw in
            var off = 0
            while off < raw.count {
                let n = write(fd, raw.baseAddress! + off, raw.count - off)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw StoreError.unreachable(peer, "sending: \(String(cString: strerror(errno)))")
                }
                off += n
            }
        }
    }

    /// Status line, headers, and the body (by Content-Length, chunked, or to the end).
    static func parse(_ raw: Data, from peer: String) throws -> Response {
        let bytes = [UInt8](raw)
        guard let end = headerEnd(bytes) else { throw StoreError.unreachable(peer, "an incomplete HTTP answer") }
        let head = String(decoding: bytes[0..<end], as: UTF8.self).split(separator: "\r\n")
        let statusParts = head.first?.split(separator: " ") ?? []
        guard statusParts.count >= 2, let status = Int(statusParts[1]) else {
            throw StoreError.unreachable(peer, "not an HTTP answer: \(head.first ?? "")")
        }
        var headers: [String: String] = [:]
        for line in head.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(
                in: .whitespaces)
        }
        let rest = Array(bytes[(end + 4)...])
        if headers["transfer-encoding"]?.lowercased() == "chunked" {
            var decoder = ChunkedDecoder()
            decoder.feed(rest)
            return Response(status: status, body: Data(decoder.takeBody()))
        }
        if let length = headers["content-length"].flatMap({ Int($0) }) {
            guard rest.count >= length else { throw StoreError.unreachable(peer, "a cut-short HTTP answer") }
            return Response(status: status, body: Data(rest[0..<length]))
        }
        return Response(status: status, body: Data(rest))
    }

    static func headerEnd(_ b: [UInt8]) -> Int? {
        guard b.count >= 4 else { return nil }
        for i in 0...(b.count - 4) where b[i] == 13 && b[i + 1] == 10 && b[i + 2] == 13 && b[i + 3] == 10 {
            return i
        }
        return nil
    }
}

/// HTTP/1.1 chunked transfer coding, decoded as bytes arrive (a watch's stream never ends).
struct ChunkedDecoder {
    private var pending: [UInt8] = []
    private var body: [UInt8] = []
    private(set) var finished = false

    mutating func feed(_ bytes: [UInt8]) {
        pending += bytes
        while !finished {
            guard let lineEnd = Self.crlf(pending, from: 0) else { return }
            let sizeText = String(decoding: pending[0..<lineEnd], as: UTF8.self).split(separator: ";").first ?? ""
            guard let size = Int(sizeText.trimmingCharacters(in: .whitespaces), radix: 16), size >= 0, size <= 1 << 30
            else {
                finished = true  // not chunked coding after all: stop
                return
            }
            let start = lineEnd + 2
            if size == 0 {
                finished = true
                return
            }
            guard pending.count >= start + size + 2 else { return }
            body += pending[start..<start + size]
            pending.removeFirst(start + size + 2)
        }
    }

    /// The body decoded so far, taken.
    mutating func takeBody() -> [UInt8] {
        defer { body.removeAll() }
        return body
    }

    static func crlf(_ b: [UInt8], from: Int) -> Int? {
        guard b.count >= from + 2 else { return nil }
        for i in from..<(b.count - 1) where b[i] == 13 && b[i + 1] == 10 { return i }
        return nil
    }
}
