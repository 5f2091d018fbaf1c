import ArgumentParser
import Foundation
import Logging

/// `--log-level` of `nvgre agent` and `nvgre gateway`.
struct LogOptions: ParsableArguments {
    @Option(
        help: ArgumentHelp(
            "trace, debug, info, notice, warning, error or critical (default: $NVGRE_LOG_LEVEL, else info). At "
                + "debug: each NAT flow created, offloaded and expired.",
            valueName: "level"))
    var logLevel: String?

    /// Sends every Logger of the process to standard output at the chosen level. Called
    /// first thing: a bad level fails before anything starts.
    func bootstrap() throws {
        let text = logLevel ?? ProcessInfo.processInfo.environment["NVGRE_LOG_LEVEL"] ?? "info"
        guard let level = Logger.Level(rawValue: text.lowercased()) else {
            throw fieldError(
                logLevel == nil ? "NVGRE_LOG_LEVEL" : "--log-level", text,
                Logger.Level.allCases.map(\.rawValue).joined(separator: ", "))
        }
        let journal = Self.standardOutputIsTheJournal(ProcessInfo.processInfo.environment["JOURNAL_STREAM"])
        setvbuf(stdout, nil, _IOLBF, 0)
        LoggingSystem.bootstrap { _ in LineLogHandler(logLevel: level, toJournal: journal) }
    }

    /// systemd sets JOURNAL_STREAM to DEVICE:INODE of the stream it connected; a process
    /// that inherited it (a shell started from a unit) writes elsewhere: standard output is
    /// the journal only when it is that very file (systemd.exec(5)).
    static func standardOutputIsTheJournal(_ variable: String?) -> Bool {
        guard let parts = variable?.split(separator: ":"), parts.count == 2, let device = UInt64(parts[0]),
            let inode = UInt64(parts[1])
        else { return false }
        var st = stat()
        guard fstat(1, &st) == 0 else { return false }
        return UInt64(st.st_dev) == device && UInt64(st.st_ino) == inode
    }
}

/// One line per event on standard output. Under systemd (JOURNAL_STREAM set) a line starts
/// with its syslog priority (`<6>`), which journald takes as the entry's level (so
/// `journalctl -p warning` works), and carries no time (the journal stamps it); elsewhere
/// it starts with the local time and the level's name. Metadata follows as key=value.
struct LineLogHandler: LogHandler {
    var logLevel: Logger.Level
    var metadata: Logger.Metadata = [:]
    let toJournal: Bool

    init(logLevel: Logger.Level, toJournal: Bool) {
        self.logLevel = logLevel
        self.toJournal = toJournal
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let fields = metadata.merging(event.metadata ?? [:]) { $1 }
        let tail = fields.sorted { $0.key < $1.key }.map { "\($0.key)=\(Self.quoted("\($0.value)"))" }
        // One event, one line (a journal entry each): an error's "hint:" line joins it.
        let message = "\(event.message)".replacingOccurrences(of: "\n", with: " ")
        let text = ([message] + tail).joined(separator: " ")
        print(toJournal ? "<\(Self.syslogPriority(event.level))>\(text)" : "\(logTime()) \(event.level) \(text)")
    }

    /// RFC 5424 severities, as sd-daemon(3) prefixes read them.
    static func syslogPriority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: return 7
        case .info: return 6
        case .notice: return 5
        case .warning: return 4
        case .error: return 3
        case .critical: return 2
        }
    }

    /// A value with spaces or quotes, quoted (so that key=value pairs split cleanly).
    static func quoted(_ s: String) -> String {
        s.contains(where: { $0 == " " || $0 == "\"" || $0 == "=" || $0 == "\n" || $0 == "\\" }) || s.isEmpty
            ? "\""
                + s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
                .replacingOccurrences(of: "\n", with: "\\n") + "\"" : s
    }
}

/// The local time of a log line; the formatter is made once (making one costs more than
/// the line) and used under a lock (it is not safe across threads).
private func logTime() -> String {
    logTimeLock.withLock { logTimeFormatter.string(from: Date()) }
}

private let logTimeLock = NSLock()
private let logTimeFormatter: DateFormatter = {
    let f = DateFormatter()
    f.dateFormat = "HH:mm:ss.SSS"
    return f
}()

/// The CLI's own lines (the store follower, metrics): through swift-log like the rest.
/// Made at each use: a Logger takes its handler when made, which must be after bootstrap.
var cliLogger: Logger { Logger(label: "nvgre") }

/// One info line of the CLI's (see LineLogHandler for the format).
func log(_ line: String, _ metadata: Logger.Metadata? = nil) {
    cliLogger.info("\(line)", metadata: metadata)
}
