import CNvgre

#if canImport(Glibc)
    import Glibc
#endif

/// Runs work inside a named network namespace (`ip netns` names, /run/netns/NAME).
///
/// setns() changes only the calling thread, so `body` must be synchronous: no `await`
/// inside, or the rest could resume on another thread in another namespace. The thread is
/// always moved back before this returns.
public enum NetworkNamespace {
    public static func run<T>(in name: String, _ body: () throws -> T) throws -> T {
        let target = open("/run/netns/\(name)", O_RDONLY | O_CLOEXEC)
        if target < 0 { throw DatapathError("open network namespace \(name)", errno: errno) }
        defer { close(target) }
        let home = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC)
        if home < 0 { throw DatapathError("open this thread's network namespace", errno: errno) }
        defer { close(home) }
        let rc = nv_setns_net(target)
        if rc < 0 { throw DatapathError.fromReturn("enter network namespace \(name)", rc) }
        defer {
            // A thread left in the wrong namespace would corrupt whatever runs on it next.
            precondition(nv_setns_net(home) == 0, "could not return to the original network namespace")
        }
        return try body()
    }

    /// The calling thread's network namespace, as a descriptor to come back to (-1: none).
    public static func current() -> Int32 { open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC) }

    /// Runs `body` with the calling thread in the namespace of descriptor `target`, and
    /// moves it back (a socket made there stays there).
    public static func run<T>(inNamespace target: Int32, _ body: () throws -> T) throws -> T {
        let home = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC)
        if home < 0 { throw DatapathError("open this thread's network namespace", errno: errno) }
        defer { close(home) }
        let rc = nv_setns_net(target)
        if rc < 0 { throw DatapathError.fromReturn("enter a network namespace", rc) }
        defer { precondition(nv_setns_net(home) == 0, "could not return to the original network namespace") }
        return try body()
    }

    /// Moves the calling thread into namespace `name` for good (a single-threaded command
    /// line tool's `-n`). nil when there is no such namespace.
    public static func enter(_ name: String) throws -> Bool {
        let target = open("/run/netns/\(name)", O_RDONLY | O_CLOEXEC)
        if target < 0 { return false }
        defer { close(target) }
        let rc = nv_setns_net(target)
        if rc != 0 { throw DatapathError("enter network namespace \(name)", errno: -rc) }
        return true
    }
}
