import Foundation
import NvgreLab
import NvgreWire
import Testing

/// Running nvgre as a service: `make install` into a staging root, the installed systemd
/// unit checked by `systemd-analyze verify` and its command lines run as systemd runs them,
/// and the libvirt hook called as libvirt calls it.
@Suite(.serialized)
struct OperationsTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path

    /// The files `make install` puts under PREFIX.
    static let installed = [
        "bin/nvgre", "share/man/man1/nvgre.1", "share/bash-completion/completions/nvgre",
        "share/zsh/site-functions/_nvgre", "share/fish/vendor_completions.d/nvgre.fish",
        "lib/systemd/system/nvgre@.service", "share/nvgre/example.env", "share/nvgre/libvirt-qemu-hook",
        "share/nvgre/nvgre.lua"
    ]

    @Test func installTheUnitStartsAnInstanceAndUninstall() throws {
        let h = try CLIHost(tag: "install")
        let root = h.temporaryPath("root")
        defer { try? FileManager.default.removeItem(atPath: root) }
        // The debug build the tests run (a release build is what `make install` makes by default).
        let make = try Spawn.run([
            "/usr/bin/make", "-s", "-C", Self.repository, "install", "DESTDIR=\(root)", "PREFIX=/usr/local",
            "CONFIG=debug", "BUILT=1"
        ])
        try #require(make.status == 0, "\(make.output)")
        let prefix = root + "/usr/local/"
        for f in Self.installed { #expect(FileManager.default.fileExists(atPath: prefix + f), "installed \(f)") }
        var isDirectory: ObjCBool = false
        #expect(FileManager.default.fileExists(atPath: root + "/etc/nvgre", isDirectory: &isDirectory))

        let man = try String(contentsOfFile: prefix + "share/man/man1/nvgre.1", encoding: .utf8)
        #expect(man.contains(".Sh NAME") && man.contains("libvirt-hook") && man.contains("metrics"))
        let completion = try Spawn.run([
            "/bin/bash", "-c", "source \(prefix)share/bash-completion/completions/nvgre && complete -p nvgre"
        ])
        #expect(completion.status == 0 && completion.output.contains("nvgre"), "\(completion.output)")
        let version = try Spawn.run([prefix + "bin/nvgre", "--version"])
        #expect(version.output.hasPrefix("nvgre 0.2.0 (programs: ABI "), "\(version.output)")

        // The unit as installed names /usr/local/bin/nvgre; systemd-analyze checks that every
        // command exists, so a copy points into the staging root. No warning is allowed.
        let unit = try String(contentsOfFile: prefix + "lib/systemd/system/nvgre@.service", encoding: .utf8)
        #expect(!unit.contains("@BINDIR@"))
        let staged = try h.file(
            "nvgre@t.service", unit.replacingOccurrences(of: "/usr/local/bin/", with: prefix + "bin/"))
        let verify = try Spawn.run(["/usr/bin/systemd-analyze", "verify", "--man=no", staged])
        #expect(verify.status == 0 && verify.output.isEmpty, "systemd-analyze verify: \(verify.output)")

        // Start the instance with the unit's own command lines, as systemd would for
        // nvgre@NAME: %i is the instance, the environment file's variables expanded, the
        // configuration folder in the staging root's /etc.
        let config = root + "/etc/nvgre"
        try FileManager.default.createDirectory(atPath: config + "/\(h.instance)", withIntermediateDirectories: true)
        try CLIHost.example.write(
            toFile: config + "/\(h.instance)/10-two-tenants.yaml", atomically: false, encoding: .utf8)
        let environment = [
            "UPLINK": "ul", "NVGRE_ROLE": "agent", "NVGRE_UP_OPTIONS": "", "NVGRE_OPTIONS": "--metrics 127.0.0.1:9418"
        ]
        func commands(_ key: String) -> [[String]] {
            unit.split(separator: "\n").filter { $0.hasPrefix(key + "=") }.map { line in
                let text = line.dropFirst(key.count + 1).replacingOccurrences(of: "%i", with: h.instance)
                    .replacingOccurrences(of: "/etc/nvgre", with: config)
                    .replacingOccurrences(of: "/usr/local/bin/", with: prefix + "bin/")
                return text.split(separator: " ").flatMap { word -> [String] in
                    var w = String(word)
                    for (k, v) in environment { w = w.replacingOccurrences(of: "${\(k)}", with: v) }
                    if w.hasPrefix("$"), let v = environment[String(w.dropFirst())] {
                        return v.split(separator: " ").map(String.init)  // $VAR: split on spaces, as systemd does
                    }
                    return [w]
                }
            }
        }
        let pre = commands("ExecStartPre"), start = commands("ExecStart")
        try #require(pre.count == 1 && start.count == 1, "\(unit)")
        #expect(pre[0].contains("--if-down") && pre[0].contains("--policy") && start[0].contains("--metrics"))
        // The host's data path lives in the test's namespace: NVGRE_NETNS, as a unit's
        // Environment= line would set it (`ip netns exec` would hide bpffs).
        let inNamespace = ["/usr/bin/env", "NVGRE_NETNS=\(h.ns)"]
        var starts = 0
        func startService() throws -> pid_t {
            for c in pre {
                let r = try Spawn.run(inNamespace + c)
                try #require(r.status == 0, "\(c.joined(separator: " ")): \(r.output)")
            }
            starts += 1
            let log = h.temporaryPath("service\(starts).log")
            let pid = try Spawn.start(inNamespace + start[0], output: log, detached: false)
            try Spawn.waitForOutput(log, containing: "handling exceptions", within: 30, what: "the unit's agent")
            return pid
        }
        let first = try startService()
        let show = h.run(["-j", "show"])
        #expect(show.status == 0 && show.out.contains("port1"), "the policy folder applied: \(show.out)")
        let metrics = try Spawn.run([
            "/usr/sbin/ip", "netns", "exec", h.ns, "/usr/bin/curl", "-sf", "http://127.0.0.1:9418/metrics"
        ])
        #expect(metrics.output.contains("nvgre_build_info{version=\""), "\(metrics.output)")
        // A port added since (as the libvirt hook adds one) ...
        let record = h.run(["lookup", "add", "5001", "198.19.1.5", "--pa", "198.18.0.1", "--mac", "02:00:00:00:01:02"])
        #expect(record.status == 0, "\(record.err)")
        let port = h.run(["port", "add", "port2", "--vsid", "5001", "--mac", "02:00:00:00:01:02", "--ca", "198.19.1.5"])
        #expect(port.status == 0, "\(port.err)")
        // ... outlives systemctl restart: the agent stops, the data path stays, the start takes
        // it up as it is (the folder is applied only when the instance comes up).
        Spawn.stop(first)
        let second = try startService()
        let after = h.run(["-j", "show", "ports"])
        #expect(after.out.contains("port2") && after.out.contains("port1"), "ports after a restart: \(after.out)")
        Spawn.stop(second)
        #expect(h.run(["down"]).status == 0)

        let uninstall = try Spawn.run([
            "/usr/bin/make", "-s", "-C", Self.repository, "uninstall", "DESTDIR=\(root)", "PREFIX=/usr/local"
        ])
        #expect(uninstall.status == 0, "\(uninstall.output)")
        for f in Self.installed { #expect(!FileManager.default.fileExists(atPath: prefix + f), "left \(f)") }
    }

    /// libvirt's qemu hook, called with libvirt's arguments and the live domain XML on
    /// standard input, makes the VM's tap a port with the metadata's VSID, MAC and address
    /// when the VM has started, leaves other operations alone, and removes the port when
    /// the VM stops (its tap gone, as QEMU's taps go with it).
    @Test func theLibvirtHookMakesAVMsTapAPort() throws {
        let h = try CLIHost(tag: "libvirt")
        #expect(h.run(["up", "--uplink", "ul"]).status == 0)
        #expect(h.run(["apply", try h.file("p.yaml", CLIHost.example)]).status == 0)
        let record = h.run(["lookup", "add", "5001", "198.19.1.9", "--pa", "198.18.0.1", "--mac", "52:54:00:00:01:09"])
        try #require(record.status == 0, "\(record.err)")
        var tap: TapVM? = try TapVM(name: "vnet7", in: h.ns)
        _ = try h.net.ip(h.ns, "link set vnet7 up")
        let hook = OperationsTests.repository + "/contrib/libvirt/qemu-hook"
        let script = try String(contentsOfFile: hook, encoding: .utf8).replacingOccurrences(
            of: "@BINDIR@/nvgre", with: CLIHost.binary)
        let installedHook = try h.file("qemu", script)
        chmod(installedHook, 0o755)

        let xml = """
            <domain type='kvm' id='7'>
              <name>red-web1</name>
              <metadata>
                <nvgre:ports xmlns:nvgre="https://nvgre-xdp.dev/libvirt/1" instance="\(h.instance)">
                  <nvgre:port mac="52:54:00:00:01:09" vsid="5001">
                    <nvgre:address>198.19.1.9</nvgre:address>
                  </nvgre:port>
                </nvgre:ports>
              </metadata>
              <devices>
                <interface type='ethernet'>
                  <mac address='52:54:00:00:01:09'/>
                  <target dev='vnet7' managed='no'/>
                  <model type='virtio'/>
                </interface>
              </devices>
            </domain>
            """
        // As libvirt runs it, the instance named by the metadata; the host's data path is
        // in the test's namespace (NVGRE_NETNS).
        func callHook(_ args: [String], _ input: String) throws -> Spawn.Result {
            let stdin = try h.file("domain.xml", input)
            return try Spawn.run([
                "/bin/sh", "-c", "NVGRE_NETNS=\(h.ns) exec \(installedHook) \(args.joined(separator: " ")) < \(stdin)"
            ])
        }
        func port() -> [String: Any]? {
            let show = h.run(["-j", "show"])
            let ports = (show.json as? [String: Any])?["ports"] as? [[String: Any]] ?? []
            return ports.first { $0["interface"] as? String == "vnet7" }
        }

        for op in ["prepare begin -", "start begin -"] {
            #expect(try callHook(["red-web1"] + op.split(separator: " ").map(String.init), xml).status == 0)
        }
        #expect(port() == nil, "no port before the VM has started")
        let started = try callHook(["red-web1", "started", "begin", "-"], xml)
        #expect(started.status == 0, "\(started.output)")
        let p = try #require(port(), "the tap is a port once the VM started: \(started.output)")
        #expect(p["vsid"] as? Int == 5001 && p["mac"] as? String == "52:54:00:00:01:09")
        #expect((p["addresses"] as? [String]) == ["198.19.1.9"])
        let interfaces = h.run(["-j", "show", "interfaces"])
        let roles = ((interfaces.json as? [String: Any])?["interfaces"] as? [[String: Any]] ?? []).filter {
            $0["interface"] as? String == "vnet7"
        }
        #expect(
            roles.count == 1 && (roles.first?["attach"] as? String ?? "none") != "none",
            "the from-VM program is on the tap: \(interfaces.out)")
        // libvirtd restarted: it reconnects and calls the hook again; nothing changes.
        #expect(try callHook(["red-web1", "reconnect", "begin", "-"], xml).status == 0)
        #expect(port() != nil)

        // A domain whose metadata names a MAC it has no interface for is refused, naming it.
        let wrong = try callHook(
            ["red-web1", "started", "begin", "-"],
            xml.replacingOccurrences(of: "mac=\"52:54:00:00:01:09\"", with: "mac=\"52:54:00:00:01:0a\""))
        #expect(
            wrong.status == 2 && wrong.output.contains("metadata port[0].mac: 52:54:00:00:01:0a"), "\(wrong.output)")
        // The same on reconnect is only reported: libvirt would kill the running VM.
        let reconnect = try callHook(
            ["red-web1", "reconnect", "begin", "-"],
            xml.replacingOccurrences(of: "mac=\"52:54:00:00:01:09\"", with: "mac=\"52:54:00:00:01:0a\""))
        #expect(
            reconnect.status == 0 && reconnect.output.contains("warning: domain red-web1"), "\(reconnect.output)")

        tap = nil  // QEMU exits: its tap goes
        #expect(tap == nil)
        let stopped = try callHook(["red-web1", "stopped", "end", "-"], xml)
        #expect(stopped.status == 0, "\(stopped.output)")
        #expect(port() == nil, "the port is gone once the VM stopped")
        #expect(try callHook(["red-web1", "release", "end", "-"], xml).status == 0, "release after stopped")
    }

    /// A veth whose other end has neither an XDP program nor GRO takes what the fast path
    /// redirects to it outside NAPI (older kernels drop it). `port add` says so, and what to
    /// do; after the fix, it is quiet and the VM is reached through NAPI.
    @Test func aVethPortWhoseOtherEndWouldDropRedirectsIsWarnedAbout() throws {
        let h = try CLIHost(tag: "vethpeer")
        #expect(h.run(["up", "--uplink", "ul"]).status == 0)
        let applied = h.run(["apply", try h.file("p.yaml", CLIHost.example)])
        #expect(applied.status == 0 && !applied.err.contains("warning"), "port1's other end has XDP: \(applied.err)")
        let vm3 = try h.net.namespace("vm3")
        try h.net.veth("port3", in: h.ns, "eth0", in: vm3, macB: "02:00:00:00:01:03")
        // The host says nothing on the port (its IPv6 link-local chatter would be counted
        // as frames reaching the VM).
        _ = try h.net.exec(h.ns, "sysctl -qw net.ipv6.conf.port3.disable_ipv6=1")
        try h.net.ip(vm3, "addr add 198.19.1.3/24 dev eth0")
        _ = try h.net.exec(vm3, "ethtool -K eth0 gro off")
        let record = h.run(["lookup", "add", "5001", "198.19.1.3", "--pa", "198.18.0.1", "--mac", "02:00:00:00:01:03"])
        try #require(record.status == 0, "\(record.err)")
        let port = ["port", "add", "port3", "--vsid", "5001", "--mac", "02:00:00:00:01:03", "--ca", "198.19.1.3"]

        let warned = h.run(port)
        #expect(warned.status == 0, "a warning, not an error: \(warned.err)")
        #expect(
            warned.err.contains(
                "warning: port3 is a veth whose other end (eth0 in namespace \(vm3)) has no XDP program and GRO off"),
            "\(warned.err)")
        #expect(warned.err.contains("`ip netns exec \(vm3) ethtool -K eth0 gro on`"), "\(warned.err)")
        // Frames from another host, decapsulated and redirected by XDP on the uplink. (This
        // kernel hands them to the per-CPU backlog when the VM's end has no NAPI; older ones
        // drop them.)
        let fabric = "\(h.net.prefix)-fabric"  // CLIHost made it: the uplink's other end, ulp
        let ulMAC = try h.net.mac("ul", in: h.ns)
        let inner = Ethernet.frame(
            dst: "02:00:00:00:01:03", src: "02:00:00:00:01:02", type: .ipv4,
            payload: IPPacket.build(
                src: "198.19.1.2", dst: "198.19.1.3", proto: 17, payload: [UInt8](repeating: 7, count: 32)))
        let gre = NVGRE.greHeader(vsid: 5001, flowID: 0, flags: 0x2000) + inner
        let frame =
            Ethernet.header(dst: ulMAC, src: "02:00:00:00:0f:02", type: EtherType.ipv4.rawValue)
            + IPv4Header(src: "198.18.0.2", dst: "198.18.0.1", proto: IPProtocol.gre.rawValue, payloadLength: gre.count)
            .bytes + gre
        func delivered() throws -> Int {
            let before = try Traffic.receivedPackets("eth0", in: vm3)
            try Traffic.sendFrames(Array(repeating: frame, count: 5), interface: "ulp", in: fabric)
            var n = 0
            for _ in 0..<20 where n < 5 {
                usleep(100_000)
                n = try Traffic.receivedPackets("eth0", in: vm3) - before
            }
            return n
        }

        _ = try h.net.exec(vm3, "ethtool -K eth0 gro on")
        #expect(h.run(["port", "del", "port3"]).status == 0)
        let quiet = h.run(port)
        #expect(quiet.status == 0 && !quiet.err.contains("warning"), "\(quiet.err)")
        let reached = try delivered()
        #expect(reached == 5, "reached after the fix: \(reached)")
    }
}
