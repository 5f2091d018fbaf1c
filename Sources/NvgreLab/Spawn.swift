import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Programs run by labs, through posix_spawn: Foundation's Process polls for the exit and
/// adds tens of milliseconds, which would blur timings and slow the demo.
public enum Spawn {
    public struct Result {
        public let status: Int32
        public let output: String  // standard output and error, interleaved
        public let seconds: Double  // wall clock from spawn to exit
        /// The child's peak resident memory (ru_maxrss of wait4, as `/usr/bin/time -v` reads it).
        public var peakKiB: Int = 0
    }

    /// Runs `argv` and waits for it.
    public static func run(_ argv: [String]) throws -> Result {
        let outPath = NSTemporaryDirectory() + "nvgre-spawn-\(getpid())-\(UUID().uuidString).out"
        defer { unlink(outPath) }
        var t0 = timespec(), t1 = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t0)
        let pid = try start(argv, output: outPath, detached: false)
        var status: Int32 = 0
        var usage = rusage()
        while wait4(pid, &status, 0, &usage) < 0 && errno == EINTR {}
        clock_gettime(CLOCK_MONOTONIC, &t1)
        let output = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
        let code = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        return Result(
            status: code, output: output,
            seconds: Double(t1.tv_sec - t0.tv_sec) + Double(t1.tv_nsec - t0.tv_nsec) / 1e9,
            peakKiB: Int(usage.ru_maxrss))
    }

    /// Starts `argv` in the background with its output appended to `output`. `detached`
    /// puts it in its own session, so it outlives this process (a kept demo's agents).
    /// With `resetSignals`, the child starts with no signal blocked and SIGINT and SIGTERM
    /// at their defaults, whatever the calling thread has (a test runner's or Dispatch's
    /// thread blocks them): for a child that must see SIGINT (perf stat). Without it the
    /// child inherits the mask, as the lab's daemons always have.
    public static func start(_ argv: [String], output: String, detached: Bool, resetSignals: Bool = false) throws
        -> pid_t
    {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_APPEND, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        // Flags (glibc's values, not imported): POSIX_SPAWN_SETSIGDEF 0x04,
        // POSIX_SPAWN_SETSIGMASK 0x08, POSIX_SPAWN_SETSID 0x80.
        if resetSignals {
            var none = sigset_t()
            sigemptyset(&none)
            posix_spawnattr_setsigmask(&attr, &none)
            var defaults = sigset_t()
            sigemptyset(&defaults)
            sigaddset(&defaults, SIGINT)
            sigaddset(&defaults, SIGTERM)
            posix_spawnattr_setsigdefault(&attr, &defaults)
        }
        posix_spawnattr_setflags(&attr, Int16((resetSignals ? 0x04 | 0x08 : 0) | (detached ? 0x80 : 0)))
        var cargs = argv.map { strdup($0) } + [nil]
        defer { cargs.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, argv[0], &actions, &attr, &cargs, environ)
        guard rc == 0 else { throw ShellErrorText("could not start \(argv[0]): \(String(cString: strerror(rc)))") }
        return pid
    }

    /// Sends SIGTERM and waits up to `seconds` for the exit, then SIGKILL.
    public static func stop(_ pid: pid_t, within seconds: Double = 3) {
        kill(pid, SIGTERM)
        var status: Int32 = 0
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if waitpid(pid, &status, WNOHANG) == pid { return }
            usleep(20_000)
        }
        kill(pid, SIGKILL)
        waitpid(pid, &status, 0)
    }
}

extension Spawn {
    /// Waits until the file `path` (a background program's output) contains `text`; throws
    /// with what it holds after `seconds`.
    public static func waitForOutput(_ path: String, containing text: String, within seconds: Double = 10, what: String)
        throws
    {
        let deadline = Date().addingTimeInterval(seconds)
        while true {
            let output = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
            if output.contains(text) { return }
            if Date() > deadline {
                throw ShellErrorText("\(what) did not start: \(output.isEmpty ? "no output" : output)")
            }
            usleep(20_000)
        }
    }
}

public struct ShellErrorText: Error, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}

/// A binary of this package: `nvgre` beside `nvgre-lab`, or above a test bundle
/// (`swift test` puts the bundle in a subdirectory of the build directory).
public func builtBinary(_ name: String) -> String {
    let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    var dir = URL(fileURLWithPath: exe).deletingLastPathComponent()
    while !FileManager.default.fileExists(atPath: dir.appendingPathComponent(name).path), dir.path != "/" {
        dir = dir.deletingLastPathComponent()
    }
    return dir.appendingPathComponent(name).path
}
