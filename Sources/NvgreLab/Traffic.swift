import CNvgre
import Foundation
import NvgreDatapath
import NvgreWire

#if canImport(Glibc)
    import Glibc
#endif

/// Traffic between lab namespaces. Sockets are opened on a thread moved into the namespace
/// (NetworkNamespace.run) and keep that namespace afterwards, so one process can talk from
/// one VM to another.
public enum Traffic {
    /// Pings from namespace `ns`; returns how many of `count` replies came back.
    public static func ping(from ns: String, to dst: IPAddress, count: Int = 5, interval: Double = 0.2) -> Int {
        let out = (try? sh("ip netns exec \(ns) ping -n -c \(count) -i \(interval) -W 1 \(dst)")) ?? ""
        guard let r = out.range(of: #"(\d+) received"#, options: .regularExpression) else { return 0 }
        return Int(out[r].split(separator: " ")[0]) ?? 0
    }

    /// What a TCP transfer gave.
    public struct Transfer: CustomStringConvertible {
        public let sent: Int
        public let received: Int
        public let intact: Bool  // every byte as sent, in order
        public let seconds: Double
        public var ok: Bool { received == sent && intact }
        public var description: String {
            "\(received)/\(sent) bytes\(intact ? "" : " (corrupted)") in \(String(format: "%.2f", seconds)) s"
        }
    }

    /// Sends `bytes` of a known pattern over TCP from `client` to `server` and checks what
    /// arrives. The client connects to `address`:`port`; the server listens on `serverPort`
    /// (the same port unless a NAT gateway translates it on the way). With `fetch` the server
    /// sends and the client receives (a download, as from a web server).
    public static func tcpTransfer(
        from client: String, to server: String, address: IPAddress, port: UInt16 = 5201,
        serverPort: UInt16? = nil, fetch: Bool = false, bytes: Int = 1 << 20,
        timeout: Double = 10
    ) throws -> Transfer {
        let listener = try NetworkNamespace.run(in: server) {
            try Socket.listen(family: address.family, port: serverPort ?? port)
        }
        let result = ReceiveResult()
        let serverSide = Thread {
            defer { result.done.signal() }
            guard let conn = listener.accept(timeout: timeout) else { return }
            if fetch { send(bytes, on: conn) } else { receive(on: conn, into: result, timeout: timeout) }
        }
        serverSide.start()
        let start = Date()
        let conn = try NetworkNamespace.run(in: client) {
            try Socket.connect(to: address, port: port, timeout: timeout)
        }
        if fetch { receive(on: conn, into: result, timeout: timeout) } else { send(bytes, on: conn) }
        _ = result.done.wait(timeout: .now() + timeout)
        return Transfer(
            sent: bytes, received: result.received, intact: result.intact, seconds: Date().timeIntervalSince(start))
    }

    private static func send(_ bytes: Int, on conn: Socket) {
        var offset = 0
        var chunk = [UInt8](repeating: 0, count: 65536)
        while offset < bytes {
            let n = min(chunk.count, bytes - offset)
            for i in 0..<n { chunk[i] = pattern(offset + i) }
            guard conn.writeAll(chunk, count: n) else { break }
            offset += n
        }
        conn.shutdownWrite()
    }

    private static func receive(on conn: Socket, into result: ReceiveResult, timeout: Double) {
        var expected = 0
        var intact = true
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = conn.read(&buf, timeout: timeout)
            if n <= 0 { break }
            for i in 0..<n where buf[i] != pattern(expected + i) {
                intact = false
                break
            }
            expected += n
        }
        result.received = expected
        result.intact = intact
    }

    private static func pattern(_ i: Int) -> UInt8 { UInt8(truncatingIfNeeded: i % 251) }

    private final class ReceiveResult: @unchecked Sendable {
        var received = 0
        var intact = false
        let done = DispatchSemaphore(value: 0)
    }

    /// A UDP socket bound in namespace `ns`; `receive` collects datagrams that arrive.
    public static func udpListener(in ns: String, family: IPFamily, port: UInt16) throws -> Socket {
        try NetworkNamespace.run(in: ns) { try Socket.udp(family: family, port: port) }
    }

    /// A TCP socket listening on every address of namespace `ns`.
    public static func tcpListener(in ns: String, family: IPFamily, port: UInt16) throws -> Socket {
        try NetworkNamespace.run(in: ns) { try Socket.listen(family: family, port: port) }
    }

    /// Seconds a TCP connection from namespace `ns` to `address`:`port` took to open; nil
    /// when it did not open within `timeout`.
    public static func connectSeconds(from ns: String, to address: IPAddress, port: UInt16, timeout: Double) -> Double?
    {
        let start = monotonicSeconds()
        guard
            (try? NetworkNamespace.run(in: ns) { try Socket.connect(to: address, port: port, timeout: timeout) }) != nil
        else { return nil }
        return monotonicSeconds() - start
    }

    /// Sends raw Ethernet frames out of `interface` in namespace `ns` (AF_PACKET), as a
    /// misbehaving VM or a forged underlay sender would.
    public static func sendFrames(_ frames: [[UInt8]], interface: String, in ns: String) throws {
        try NetworkNamespace.run(in: ns) {
            let fd = socket(AF_PACKET, Int32(SOCK_RAW.rawValue), 0)
            if fd < 0 { throw DatapathError("open a packet socket in \(ns)", errno: errno) }
            defer { close(fd) }
            var addr = sockaddr_ll()
            addr.sll_family = UInt16(AF_PACKET)
            addr.sll_ifindex = Int32(try interfaceIndex(interface))
            addr.sll_halen = 6
            for f in frames {
                let sent = withUnsafePointer(to: &addr) { p in
                    p.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        sendto(fd, f, f.count, 0, $0, socklen_t(MemoryLayout<sockaddr_ll>.size))
                    }
                }
                if sent < 0 { throw DatapathError("send a frame on \(interface) in \(ns)", errno: errno) }
            }
        }
    }

    /// Packets received by `interface` in namespace `ns` so far (its kernel counter).
    public static func receivedPackets(_ interface: String, in ns: String) throws -> Int {
        let link = try LabNetwork.link(interface, in: ns, statistics: true)
        guard let stats = link["stats64"] as? [String: Any], let rx = stats["rx"] as? [String: Any],
            let packets = rx["packets"] as? Int
        else {
            throw ShellErrorText("no receive counter for \(interface) in \(ns): \(link)")
        }
        return packets
    }
}

/// One TCP connection kept open across the steps of a test (a long-lived flow through a
/// gateway): `exchange` sends bytes from the client and checks that the server gets them.
public final class TCPSession {
    private let client: Socket
    private let server: Socket

    public init(
        from clientNS: String, to serverNS: String, address: IPAddress, port: UInt16, serverPort: UInt16? = nil,
        timeout: Double = 5
    ) throws {
        let listener = try NetworkNamespace.run(in: serverNS) {
            try Socket.listen(family: address.family, port: serverPort ?? port)
        }
        client = try NetworkNamespace.run(in: clientNS) {
            try Socket.connect(to: address, port: port, timeout: timeout)
        }
        guard let s = listener.accept(timeout: timeout) else {
            throw ShellErrorText("no connection reached \(serverNS) on port \(serverPort ?? port)")
        }
        server = s
    }

    public func exchange(_ count: Int = 4096, timeout: Double = 3) -> Bool {
        let data = [UInt8](repeating: 0x5a, count: count)
        guard client.writeAll(data, count: count) else { return false }
        var got = 0
        var buf = [UInt8](repeating: 0, count: 65536)
        while got < count {
            let n = server.read(&buf, timeout: timeout)
            if n <= 0 { return false }
            got += n
        }
        return true
    }
}
