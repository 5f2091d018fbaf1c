import ArgumentParser
import FlyingFox
import FlyingSocks
import Foundation
import NvgreControl
import NvgreWire

/// `--metrics ADDR:PORT` of `nvgre agent` and `nvgre gateway`.
struct MetricsOptions: ParsableArguments {
    @Option(
        help: ArgumentHelp(
            "Serve Prometheus metrics at http://ADDR:PORT/metrics (read from the counters at scrape time); an "
                + "IPv6 address in brackets. Off unless given.",
            valueName: "addr:port"))
    var metrics: String?
    @Option(
        help: ArgumentHelp(
            "With --metrics: per-VSID series for at most this many VSIDs (the lowest first; 0: none). Each VSID "
                + "adds 16 series.",
            valueName: "n"))
    var metricsVsids = "0"

    /// Parses "ADDR:PORT" (IPv4, or IPv6 in brackets), naming the option in errors.
    static func endpoint(_ text: String) throws -> (address: String, port: UInt16, v6: Bool) {
        let allowed = "ADDR:PORT, e.g. 127.0.0.1:9417 or [::1]:9417"
        var host = Substring(text), v6 = false
        guard let colon = text.lastIndex(of: ":") else { throw fieldError("--metrics", text, allowed) }
        host = text[..<colon]
        let portText = String(text[text.index(after: colon)...])
        if host.hasPrefix("[") && host.hasSuffix("]") {
            host = host.dropFirst().dropLast()
            v6 = true
        }
        guard let address = IPAddress(parsing: String(host)), (address.family == .v6) == v6 else {
            throw fieldError("--metrics", text, allowed)
        }
        guard let port = UInt16(portText), port > 0 else {
            throw fieldError("--metrics", text, "a port from 1 to 65535 after the address (\(allowed))")
        }
        return (String(host), port, v6)
    }

    /// Checks both options (before anything else runs: a typo fails at once, not after the
    /// instance was opened).
    func check() throws {
        guard let metrics else { return }
        _ = try parseNumber(metricsVsids, "--metrics-vsids", 0...100_000)
        _ = try Self.endpoint(metrics)
    }

    /// Starts the server when --metrics is given: returns once it listens (or throws if the
    /// address cannot be bound). It serves on a task of its own until the process exits.
    func start(snapshot: @escaping @Sendable () -> InstanceMetrics.Snapshot) throws {
        guard let metrics else { return }
        let cap = Int(try parseNumber(metricsVsids, "--metrics-vsids", 0...100_000))
        let (address, port, v6) = try Self.endpoint(metrics)
        let renderer = InstanceMetrics(vsidSeriesCap: cap, version: nvgreVersion)
        let server: HTTPServer =
            v6
            ? HTTPServer(address: try .inet6(ip6: address, port: port), logger: .disabled)
            : HTTPServer(address: try .inet(ip4: address, port: port), logger: .disabled)
        // The first to finish wins: the server listening, or run() failing (the bind's error).
        let started = DispatchSemaphore(value: 0)
        let failure = FirstError()
        Task.detached {
            await server.appendRoute("GET /metrics") { _ in
                let text = renderer.render(snapshot())
                return HTTPResponse(
                    statusCode: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                    body: Data(text.utf8))
            }
            do {
                try await server.run()
            } catch {
                failure.note(error)
                started.signal()
            }
        }
        Task.detached {
            do { try await server.waitUntilListening(timeout: 5) } catch { failure.note(error) }
            started.signal()
        }
        started.wait()
        if let failure = failure.error {
            throw ControlError(
                "--metrics \(metrics): cannot serve there (\(failure))",
                hint: "pick a free port, on an address of this host's namespace")
        }
        log("metrics: serving http://\(v6 ? "[\(address)]" : address):\(port)/metrics")
    }
}

/// The first error noted by either of two tasks.
private final class FirstError: @unchecked Sendable {
    private let lock = NSLock()
    private var first: Error?
    func note(_ e: Error) { lock.withLock { if first == nil { first = e } } }
    var error: Error? { lock.withLock { first } }
}
