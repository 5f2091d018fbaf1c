import Foundation
import NvgreDatapath
import NvgreWire

#if canImport(Glibc)
    import Glibc
#endif

/// A small blocking socket with timeouts, for lab traffic. The namespace it lives in is the
/// one of the thread that created it.
public final class Socket: @unchecked Sendable {
    let fd: Int32

    init(fd: Int32) { self.fd = fd }
    deinit { close(fd) }

    static func listen(family: IPFamily, port: UInt16) throws -> Socket {
        let s = try Socket(fd: open(family, SOCK_STREAM))
        var one: Int32 = 1
        setsockopt(s.fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        try s.bind(family: family, port: port)
        if Glibc.listen(s.fd, 64) != 0 { throw DatapathError("listen on port \(port)", errno: errno) }
        return s
    }

    static func udp(family: IPFamily, port: UInt16) throws -> Socket {
        let s = try Socket(fd: open(family, SOCK_DGRAM))
        try s.bind(family: family, port: port)
        return s
    }

    static func connect(to address: IPAddress, port: UInt16, timeout: Double) throws -> Socket {
        let s = try Socket(fd: open(address.family, SOCK_STREAM))
        var tv = timeval(tv_sec: Int(timeout), tv_usec: 0)
        setsockopt(s.fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))  // bounds connect too
        let rc = withSocketAddress(address, port: port) { Glibc.connect(s.fd, $0, $1) }
        if rc != 0 { throw DatapathError("connect to \(address) port \(port)", errno: errno) }
        return s
    }

    private static func open(_ family: IPFamily, _ type: __socket_type) throws -> Int32 {
        let fd = socket(family == .v4 ? AF_INET : AF_INET6, Int32(type.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        if fd < 0 { throw DatapathError("open a socket", errno: errno) }
        return fd
    }

    private func bind(family: IPFamily, port: UInt16) throws {
        let any = family == .v4 ? IPAddress(v4: [0, 0, 0, 0]) : IPAddress(v6: [UInt8](repeating: 0, count: 16))
        // A socket this process just closed can stay bound for a moment: a child that another
        // thread is spawning holds a copy of every descriptor until its exec closes them.
        let deadline = monotonicSeconds() + 2
        while withSocketAddress(any, port: port, { Glibc.bind(fd, $0, $1) }) != 0 {
            if errno != EADDRINUSE || monotonicSeconds() > deadline {
                throw DatapathError("bind port \(port)", errno: errno)
            }
            usleep(20_000)
        }
    }

    private func readable(within timeout: Double) -> Bool {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&p, 1, Int32(timeout * 1000)) > 0
    }

    /// Accepts (and closes) connections until none comes within `timeout`: how many came.
    public func acceptedConnections(timeout: Double) -> Int {
        var n = 0
        while accept(timeout: timeout) != nil { n += 1 }
        return n
    }

    func accept(timeout: Double) -> Socket? {
        guard readable(within: timeout) else { return nil }
        let c = Glibc.accept(fd, nil, nil)
        return c < 0 ? nil : Socket(fd: c)
    }

    /// Bytes read, 0 at the end of the stream, -1 on error or timeout.
    func read(_ buf: inout [UInt8], timeout: Double) -> Int {
        guard readable(within: timeout) else { return -1 }
        return recv(fd, &buf, buf.count, 0)
    }

    func writeAll(_ buf: [UInt8], count: Int) -> Bool {
        var off = 0
        while off < count {
            let n = buf.withUnsafeBytes { send(fd, $0.baseAddress! + off, count - off, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return false }
            off += n
        }
        return true
    }

    func shutdownWrite() { shutdown(fd, Int32(SHUT_WR)) }

    /// Datagrams that arrive within `timeout` (stops at the first quiet `timeout`).
    public func receive(timeout: Double) -> [[UInt8]] {
        var out: [[UInt8]] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while readable(within: timeout) {
            let n = recv(fd, &buf, buf.count, 0)
            if n <= 0 { break }
            out.append(Array(buf[0..<n]))
        }
        return out
    }
}
