import Foundation
import NvgreWire

#if canImport(Glibc)
    import Glibc
#endif

/// tcpdump on an interface of a lab namespace, writing a pcap file: an independent view of
/// what went over the wire.
public final class Capture {
    public let path: String
    private let log: String
    private var pid: pid_t?

    /// Starts tcpdump and returns once it listens. Frames are cut at `snapLength` bytes (0:
    /// whole, up to tcpdump's 262,144).
    public init(in ns: String, interface: String, filter: String, name: String, snapLength: Int = 512) throws {
        path = NSTemporaryDirectory() + "\(name).pcap"
        log = path + ".log"
        // --immediate-mode hands each packet over at once (else those still in the kernel's
        // ring when we stop are counted but never written); -U writes each at once; -Z root
        // keeps the right to write our private directory.
        pid = try Spawn.start(
            [
                "/bin/sh", "-c",
                "exec ip netns exec \(ns) tcpdump -i \(interface) -n --immediate-mode -U -Z root -s \(snapLength) -w \(path) "
                    + "'\(filter)'"
            ],
            output: log, detached: false)
        do {
            try Spawn.waitForOutput(log, containing: "listening on", what: "tcpdump on \(interface) in \(ns)")
        } catch {
            stop()
            throw error
        }
    }

    deinit {
        stop()
        unlink(path)
        unlink(log)
    }

    /// Stops tcpdump (it flushes the file on SIGTERM).
    public func stop() {
        if let p = pid { Spawn.stop(p) }
        pid = nil
    }

    /// The captured frames, read back from the file.
    public func frames() throws -> [[UInt8]] {
        stop()
        return try Pcap.frames(from: [UInt8](FileManager.default.contents(atPath: path) ?? Data()))
    }

    /// tcpdump's own reading of the file, one line per frame (`-n`, `-v` off; `options`
    /// adds some, such as `-e` for the link-level headers).
    public func tcpdumpLines(limit: Int? = nil, options: String = "") throws -> [String] {
        stop()
        let out = try sh("tcpdump -r \(path) -n \(options) \(limit.map { "-c \($0)" } ?? "") 2>/dev/null")
        return out.split(separator: "\n").map(String.init)
    }
}
