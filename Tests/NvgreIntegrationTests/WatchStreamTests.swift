import Foundation
import Testing

@testable import NvgreStore

/// The watch stream's parsing, on bytes as etcd 3.4's JSON gateway sends them (taken from a
/// real session: an HTTP header, then chunks), cut at every possible place: the objects and
/// events come out the same however the bytes arrive.
struct WatchStreamTests {
    static func chunk(_ text: String) -> String { String(text.utf8.count, radix: 16) + "\r\n" + text + "\r\n" }

    static let objects = [
        #"{"result":{"header":{"cluster_id":"1","member_id":"2","revision":"3","raft_term":"2"},"created":true}}"#,
        #"{"result":{"header":{"revision":"4"},"events":[{"kv":{"key":"L252Z3JlL3YxL2VkaXRlZA==","create_revision":"3","mod_revision":"4","version":"2","value":"eyJ9In0="}}]}}"#,
        #"{"result":{"header":{"revision":"5"},"events":[{"type":"DELETE","kv":{"key":"L252Z3JlL3YxL3g=","mod_revision":"5"}}]}}"#,
        #"{"result":{"header":{"revision":"9"},"compact_revision":"7","canceled":true}}"#
    ]

    static var stream: [UInt8] {
        // Two objects in one chunk, one split over two chunks, one alone.
        let a = objects[0] + "\n" + objects[1] + "\n"
        let b = objects[2] + "\n"
        let split = b.index(b.startIndex, offsetBy: 20)
        let text =
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk(a)
            + chunk(String(b[..<split])) + chunk(String(b[split...])) + chunk(objects[3])
        return Array(text.utf8)
    }

    static let expected: [EtcdWatch.Event] = [
        .changed(revision: 4, changes: [.init(key: "/nvgre/v1/edited", value: Data(#"{"}"}"#.utf8), revision: 4)]),
        .changed(revision: 5, changes: [.init(key: "/nvgre/v1/x", value: nil, revision: 5)]),
        .compacted(7)
    ]

    @Test func eventsAreTheSameWhereverTheBytesAreCut() throws {
        let bytes = Self.stream
        for cut in 1..<bytes.count {
            let w = EtcdWatch(parsingFor: .init(host: "127.0.0.1", port: 1))
            let events = try w.take(Array(bytes[..<cut])) + w.take(Array(bytes[cut...]))
            #expect(events == Self.expected, "cut at \(cut)")
        }
        let w = EtcdWatch(parsingFor: .init(host: "127.0.0.1", port: 1))
        var one: [EtcdWatch.Event] = []
        for b in bytes { one += try w.take([b]) }
        #expect(one == Self.expected, "byte by byte")
    }

    @Test func aRefusedWatchAndAServerErrorAreNamed() throws {
        let refused = EtcdWatch(parsingFor: .init(host: "127.0.0.1", port: 1))
        #expect(throws: StoreError.self) { try refused.take(Array("HTTP/1.1 404 Not Found\r\n\r\n".utf8)) }
        let failed = EtcdWatch(parsingFor: .init(host: "127.0.0.1", port: 1))
        let error = #"{"error":{"grpc_code":14,"http_code":503,"message":"etcdserver: no leader"}}"#
        let events = try failed.take(
            Array(("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + Self.chunk(error)).utf8))
        #expect(events == [.canceled("etcdserver: no leader")])
    }
}
