import Foundation
import NvgreDatapath

/// One writer of an instance at a time. `apply`, every add and del, `down` and a store
/// agent's applies each read the live state, change it and store what they made; two at
/// once would interleave into a state that is neither. Each takes the instance's turn
/// first: an flock on `writer.lock` in the state directory, which the kernel releases when
/// its holder exits or dies, so a killed writer never blocks the next.
///
/// The file says who holds the turn (for the message of a writer that waits) and counts
/// turns: a writer that remembers what it wrote (an agent diffing against its last apply)
/// learns from the count whether anyone else wrote since.
public final class WriterTurn {
    /// The number of this turn; the next writer sees it as `previous`.
    public let number: UInt64
    /// The number of the turn before this one (0: none since the instance came up).
    public let previous: UInt64
    private let fd: Int32

    static let file = "writer.lock"

    private let instance: String
    private var released = false

    private init(instance: String, fd: Int32, previous: UInt64) {
        self.instance = instance
        self.fd = fd
        self.previous = previous
        self.number = previous &+ 1
    }

    deinit {
        if !released { release() }
        close(fd)
    }

    /// The instances whose turn a thread of this process has now, and which thread.
    private static let held = HeldTurns()

    /// Whether the calling thread has instance `name`'s turn now. Another thread of this
    /// process with the turn is another writer (an agent's store sync beside its recovery
    /// check): its turn is not the caller's.
    public static func isHeldByThisThread(_ name: String) -> Bool { held.isHeldByThisThread(name) }

    /// Who holds a turn, as its file says: the line written by `take`.
    struct Holder {
        var turn: UInt64 = 0
        var description = "another nvgre process"

        init(_ text: String) {
            let parts = text.split(separator: " ", maxSplits: 1)
            turn = parts.first.flatMap { UInt64($0) } ?? 0
            if parts.count == 2 {
                description = parts[1].trimmingCharacters(in: .whitespacesAndNewlines)
            }
        }
    }

    /// Takes instance `name`'s turn, waiting up to `wait` seconds for the writer that has
    /// it (`waiting` is told once whom it waits for). nil when the instance has no state
    /// directory: there is nothing to write, and the command says so itself.
    public static func take(
        instance name: String, doing what: String, wait: Double = defaultWait,
        waiting: (String) -> Void = { _ in }
    ) throws -> WriterTurn? {
        let path = "\(Instance.stateDirectory(name))/\(file)"
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        if fd < 0 {
            if errno == ENOENT { return nil }
            throw DatapathError("open \(path)", errno: errno)
        }
        let deadline = monotonicSeconds() + wait
        var told = false
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let holder = Holder(readAll(fd))
            if monotonicSeconds() >= deadline {
                close(fd)
                throw ControlError(
                    "instance \(name) is being changed by \(holder.description), still after \(Int(wait)) s",
                    hint: "let it finish, or stop it; $\(waitVariable) sets how many seconds a writer waits")
            }
            if !told {
                waiting("waiting for \(holder.description) to finish changing instance \(name)")
                told = true
            }
            usleep(5_000)
        }
        let turn = WriterTurn(instance: name, fd: fd, previous: Holder(readAll(fd)).turn)
        held.insert(name)
        let line = "\(turn.number) pid \(getpid()) (\(what))\n"
        ftruncate(fd, 0)
        _ = line.withCString { pwrite(fd, $0, strlen($0), 0) }
        return turn
    }

    /// Ends the turn (closing the file also would).
    public func release() {
        guard !released else { return }
        released = true
        Self.held.remove(instance)
        flock(fd, LOCK_UN)
    }

    /// Seconds a writer waits for the turn: 60, or $NVGRE_WRITER_WAIT.
    public static var defaultWait: Double {
        ProcessInfo.processInfo.environment[waitVariable].flatMap(Double.init) ?? 60
    }
    public static let waitVariable = "NVGRE_WRITER_WAIT"

    private static func readAll(_ fd: Int32) -> String {
        var buf = [UInt8](repeating: 0, count: 256)
        let n = pread(fd, &buf, buf.count, 0)
        return String(decoding: buf.prefix(max(n, 0)), as: UTF8.self)
    }
}

/// Instance names and the thread that has each one's turn, behind a lock.
private final class HeldTurns: @unchecked Sendable {
    private let lock = NSLock()
    private var holders: [String: pthread_t] = [:]

    func isHeldByThisThread(_ name: String) -> Bool {
        lock.withLock { holders[name].map { pthread_equal($0, pthread_self()) != 0 } ?? false }
    }
    func insert(_ name: String) { lock.withLock { holders[name] = pthread_self() } }
    func remove(_ name: String) { _ = lock.withLock { holders.removeValue(forKey: name) } }
}
