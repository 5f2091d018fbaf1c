import Foundation
import NvgreStore

#if canImport(Glibc)
    import Glibc
#endif

/// A real etcd cluster (Debian's etcd-server) on loopback for the tests and the demo: each
/// member a child process with its data under /run/nvgre/<prefix>-etcd/<member> and a pid
/// file beside it (lab-cleanup.sh kills what a crashed run left). Ports are picked free.
public final class EtcdCluster {
    public struct Member {
        public let name: String
        public let clientPort: UInt16
        public let peerPort: UInt16
        public var pid: pid_t?
    }

    public private(set) var members: [Member] = []
    public let directory: String

    /// `etcd://127.0.0.1:P1,127.0.0.1:P2,...`: every member's client address.
    public var address: String {
        "etcd://" + members.map { "127.0.0.1:\($0.clientPort)" }.joined(separator: ",")
    }

    /// One member's client address alone.
    public func address(of i: Int) -> String { "etcd://127.0.0.1:\(members[i].clientPort)" }

    /// Starts `count` members as one new cluster and waits until it takes a write. `kept`
    /// members outlive this object and its process (a kept demo; lab-cleanup.sh ends them).
    public init(
        prefix: String = LabNetwork.runPrefix, count: Int = 3, extraFlags: [String] = [], kept: Bool = false
    ) throws {
        self.kept = kept
        directory = "/run/nvgre/\(prefix)-etcd"
        try? FileManager.default.removeItem(atPath: directory)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let ports = try Self.freePorts(2 * count)
        members = (0..<count).map {
            Member(name: "m\($0 + 1)", clientPort: ports[2 * $0], peerPort: ports[2 * $0 + 1], pid: nil)
        }
        self.extraFlags = extraFlags
        do {
            for i in members.indices { try start(i) }
            try waitUntilWritable()
        } catch {
            down()
            throw error
        }
    }

    private let extraFlags: [String]
    private let kept: Bool

    deinit { if !kept { down() } }

    /// Starts member `i` (again, after `kill`: with its data, it rejoins).
    public func start(_ i: Int) throws {
        let m = members[i]
        let cluster = members.map { "\($0.name)=http://127.0.0.1:\($0.peerPort)" }.joined(separator: ",")
        let data = "\(directory)/\(m.name)"
        let argv =
            [
                "/usr/bin/etcd", "--name", m.name, "--data-dir", data,
                "--listen-client-urls", "http://127.0.0.1:\(m.clientPort)",
                "--advertise-client-urls", "http://127.0.0.1:\(m.clientPort)",
                "--listen-peer-urls", "http://127.0.0.1:\(m.peerPort)",
                "--initial-advertise-peer-urls", "http://127.0.0.1:\(m.peerPort)",
                "--initial-cluster", cluster, "--initial-cluster-state", "new",
                "--initial-cluster-token", URL(fileURLWithPath: directory).lastPathComponent,
                "--heartbeat-interval", "50", "--election-timeout", "500", "--log-level", "warn"
            ] + extraFlags
        let pid = try Spawn.start(argv, output: "\(directory)/\(m.name).log", detached: kept)
        members[i].pid = pid
        try "\(pid)\n".write(toFile: "\(directory)/\(m.name).pid", atomically: true, encoding: .utf8)
    }

    /// Kills member `i` at once (SIGKILL: a crash, not a shutdown).
    public func kill(_ i: Int) {
        guard let pid = members[i].pid else { return }
        Glibc.kill(pid, SIGKILL)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        members[i].pid = nil
        unlink("\(directory)/\(members[i].name).pid")
    }

    /// Every member killed, the data kept (the store down, not lost).
    public func killAll() {
        for i in members.indices { kill(i) }
    }

    /// Every member not running started again with its data.
    public func startAll() throws {
        for i in members.indices where members[i].pid == nil { try start(i) }
        try waitUntilWritable()
    }

    /// Every member killed and the data removed.
    public func down() {
        for i in members.indices { kill(i) }
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// The log of member `i` (for a failure's message).
    public func log(_ i: Int) -> String {
        (try? String(contentsOfFile: "\(directory)/\(members[i].name).log", encoding: .utf8)) ?? ""
    }

    /// Waits until a write through the running members succeeds (a leader is elected).
    public func waitUntilWritable(within seconds: Double = 20) throws {
        let deadline = Date().addingTimeInterval(seconds)
        var last = ""
        while Date() < deadline {
            let r = try Spawn.run(
                [
                    "/usr/bin/etcdctl", "--endpoints",
                    members.filter { $0.pid != nil }.map { "127.0.0.1:\($0.clientPort)" }
                        .joined(separator: ","), "--dial-timeout", "1s", "--command-timeout", "2s", "put",
                    "/nvgre-lab/ready", "1"
                ])
            if r.status == 0 { return }
            last = r.output
            usleep(100_000)
        }
        throw ShellErrorText("etcd cluster in \(directory) took no write within \(seconds) s: \(last)\n\(log(0))")
    }

    /// The revision of the last completed write of the policy (`edited`'s; 0: none yet).
    /// Agents that have read at it or later have the policy as it is now.
    public func policyRevision() throws -> Int {
        Int(try EtcdClient(address: address, timeout: 2).get(StoreLayout.edited)?.modRevision ?? 0)
    }

    /// The member that leads now, by index (each running member asked until one answers).
    public func leader() throws -> Int {
        let etcd = try EtcdClient(address: address, timeout: 2)
        for i in members.indices where members[i].pid != nil {
            guard
                let s = try? etcd.status(
                    of: EtcdClient.Endpoint(host: "127.0.0.1", port: members[i].clientPort))
            else { continue }
            for j in members.indices where members[j].pid != nil {
                let other = try? etcd.status(of: EtcdClient.Endpoint(host: "127.0.0.1", port: members[j].clientPort))
                if other?.memberID == s.leaderID { return j }
            }
        }
        throw ShellErrorText("no member of the etcd cluster in \(directory) names a running leader")
    }

    /// Loopback TCP ports nothing listens on now (bound to port 0, then released).
    static func freePorts(_ n: Int) throws -> [UInt16] {
        var fds: [Int32] = []
        defer { fds.forEach { close($0) } }
        return try (0..<n).map { _ in
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            fds.append(fd)
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_addr.s_addr = inet_addr("127.0.0.1")
            addr.sin_port = 0
            var len = socklen_t(MemoryLayout<sockaddr_in>.size)
            let ok = withUnsafeMutablePointer(to: &addr) { p in
                p.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0
                }
            }
            guard ok else { throw ShellErrorText("no free loopback port: \(String(cString: strerror(errno)))") }
            return UInt16(bigEndian: addr.sin_port)
        }
    }
}
