#if canImport(Glibc)
    import Glibc
#endif

/// The few file system calls the control plane makes, with errors that name the file.
public enum Files {
    public static func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }

    /// Removes a file or a pin; one already gone is not an error.
    public static func remove(_ path: String) { _ = unlink(path) }

    /// The inode of `path` (a pin replaced by a new `up` has another), nil when absent.
    public static func inode(_ path: String) -> UInt? {
        var st = stat()
        return stat(path, &st) == 0 ? UInt(st.st_ino) : nil
    }

    public static func isRegularFile(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG
    }

    /// Opens `path` read-only and calls `body` with the descriptor and the size fstat gives.
    private static func withOpened<R>(_ path: String, _ body: (Int32, Int) throws -> R?) rethrows -> R? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 { return nil }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { return nil }
        return try body(fd, Int(st.st_size))
    }

    /// A file's bytes, read straight into one array (a 100 MB policy file is not held twice);
    /// nil when it cannot be read.
    public static func read(_ path: String) -> [UInt8]? {
        withOpened(path) { fd, size in
            var failed = false
            var out = [UInt8](unsafeUninitializedCapacity: size) { buffer, count in
                while count < size {
                    let n = Glibc.read(fd, buffer.baseAddress! + count, size - count)
                    if n > 0 {
                        count += n
                    } else if n == 0 || errno != EINTR {
                        failed = n < 0
                        break
                    }
                }
            }
            // Whatever is there beyond the size fstat gave (a pipe, a file still growing).
            var more = [UInt8](repeating: 0, count: 65536)
            while !failed {
                let n = Glibc.read(fd, &more, more.count)
                if n > 0 {
                    out.append(contentsOf: more[0..<n])
                } else if n == 0 || errno != EINTR {
                    failed = n < 0
                    break
                }
            }
            return failed ? nil : out
        }
    }

    /// Calls `body` with a regular file's bytes mapped read-only (nothing copied); nil when
    /// the file cannot be opened or mapped.
    public static func withMapped<R>(_ path: String, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R? {
        try withOpened(path) { fd, size in
            if size == 0 { return try body(UnsafeRawBufferPointer(start: nil, count: 0)) }
            guard let p = mmap(nil, size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0), p != MAP_FAILED else {
                return nil
            }
            defer { munmap(p, size) }
            return try body(UnsafeRawBufferPointer(start: p, count: size))
        }
    }

    /// Writes `text` to a temporary file beside `path`, then renames it over `path`.
    public static func replace(_ path: String, with text: String) throws {
        try replace(path, with: Array(text.utf8))
    }

    /// The same with bytes.
    public static func replace(_ path: String, with bytes: [UInt8]) throws {
        // Named by process: two processes replacing one file never rename each other's.
        let tmp = path + ".\(getpid()).tmp"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        if fd < 0 { throw DatapathError("write \(tmp)", errno: errno) }
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        let e = errno
        close(fd)
        if written != bytes.count { throw DatapathError("write \(tmp)", errno: written < 0 ? e : EIO) }
        if rename(tmp, path) != 0 { throw DatapathError("replace \(path)", errno: errno) }
    }
}

/// An exclusive lock on a file that holds the locking process's pid, released by the kernel
/// if the process dies. `holder` is the pid in the file when someone else has the lock.
public final class PidFileLock {
    public let path: String
    private let fd: Int32

    public enum Outcome {
        case locked(PidFileLock)
        case heldBy(String)
    }

    private init(path: String, fd: Int32) {
        self.path = path
        self.fd = fd
    }

    public static func acquire(_ path: String) throws -> Outcome {
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        if fd < 0 { throw DatapathError("open \(path)", errno: errno) }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            var buf = [UInt8](repeating: 0, count: 32)
            let n = read(fd, &buf, buf.count)
            close(fd)
            let pid = String(decoding: buf.prefix(max(n, 0)), as: UTF8.self).filter { !$0.isWhitespace }
            return .heldBy(pid)
        }
        ftruncate(fd, 0)
        let text = "\(getpid())\n"
        _ = text.withCString { write(fd, $0, strlen($0)) }
        return .locked(PidFileLock(path: path, fd: fd))
    }

    public func release() {
        unlink(path)
        close(fd)
    }
}

/// SIGINT and SIGTERM blocked and collected between polls: no handler, no globals.
public struct StopSignals {
    private var set = sigset_t()

    public init() {
        sigemptyset(&set)
        sigaddset(&set, SIGINT)
        sigaddset(&set, SIGTERM)
        pthread_sigmask(SIG_BLOCK, &set, nil)
    }

    /// "SIGINT" or "SIGTERM" when one is pending (taken), else nil; never waits.
    public mutating func pending() -> String? {
        var zero = timespec()
        let sig = sigtimedwait(&set, nil, &zero)
        return sig > 0 ? (sig == SIGINT ? "SIGINT" : "SIGTERM") : nil
    }
}

/// This process's id (for logs).
public var processID: Int32 { getpid() }
