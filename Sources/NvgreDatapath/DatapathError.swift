#if canImport(Glibc)
    import Glibc
#endif

/// An error from the data path layer: what was being done, the errno, and what to do.
public struct DatapathError: Error, CustomStringConvertible, Sendable {
    public let operation: String
    public let errno: Int32
    public let detail: String

    public init(_ operation: String, errno: Int32 = 0, detail: String = "") {
        self.operation = operation
        self.errno = errno
        self.detail = detail
    }

    /// Builds the error from a libbpf-style return (negative errno) or the global errno.
    public static func fromReturn(_ operation: String, _ rc: Int32, detail: String = "") -> DatapathError {
        let e = rc < 0 ? -rc : Glibc.errno
        return DatapathError(operation, errno: e, detail: detail)
    }

    public var description: String {
        var s = operation
        if errno != 0 { s += ": " + String(cString: strerror(errno)) + " (errno \(errno))" }
        if let hint = hint { s += "\nhint: " + hint }
        if !detail.isEmpty { s += "\n" + detail }
        return s
    }

    var hint: String? {
        switch errno {
        case EPERM where getuid() != 0: return "run as root (CAP_BPF and CAP_NET_ADMIN are needed)"
        case EPERM: return "the kernel refused; check CAP_BPF/CAP_NET_ADMIN and the memlock limit"
        case ENODEV: return "no such interface in this network namespace"
        case ENOENT where operation.contains("bpffs"): return "mount bpffs: mount -t bpf bpf /sys/fs/bpf"
        case EBUSY, EEXIST: return "something is already attached there; detach it first"
        default: return nil
        }
    }
}

/// Runs `body` with errno captured into a DatapathError when it returns a negative value.
@discardableResult
func check(_ operation: @autoclosure () -> String, _ rc: Int32) throws -> Int32 {
    if rc < 0 { throw DatapathError.fromReturn(operation(), rc) }
    return rc
}

/// libbpf refuses opts whose bytes beyond what it knows are not zero, padding included, and
/// Swift's init() leaves padding undefined: opts are cleared in place, then sized.
func prepareOpts<T>(_ opts: inout T, size: Int) {
    withUnsafeMutableBytes(of: &opts) { b in
        b.initializeMemory(as: UInt8.self, repeating: 0)
        b.storeBytes(of: size, as: Int.self)
    }
}
