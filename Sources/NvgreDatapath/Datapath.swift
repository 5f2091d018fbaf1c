import CNvgre
#if canImport(Glibc)
import Glibc
#endif

/// Sizes and switches fixed when the object is loaded.
public struct LoadOptions: Sendable {
    public var maxLookups = UInt32(NV_DEFAULT_MAX_LOOKUPS)
    public var maxSubnets = UInt32(NV_DEFAULT_MAX_SUBNETS)
    public var maxPorts = UInt32(NV_DEFAULT_MAX_PORTS)
    public var maxPortAddresses = UInt32(NV_DEFAULT_MAX_PORT_CAS)
    public var maxRoutes = UInt32(NV_DEFAULT_MAX_ROUTES)
    public var exceptionRingBytes = UInt32(NV_DEFAULT_EXC_RING_BYTES)
    /// Programs write an `nv_trace` record into the XDP metadata before returning. For tests
    /// and `nvgre trace`; a live data path leaves it off.
    public var trace = false

    public init() {}
}

/// The XDP programs in the object.
public enum Program: String, CaseIterable, Sendable {
    case fromVM = "nv_from_vm"
    case fromFabric = "nv_from_fabric"
    case barePass = "nv_bare_pass"
    case bareTX = "nv_bare_tx"
}

/// One loaded instance of the BPF object (programs and maps), from the embedded skeleton.
public final class Datapath {
    let skel: UnsafeMutablePointer<nvgre>

    public let lookups: BPFMap<nv_lookup_key, nv_lookup_val>
    public let subnets: BPFMap<UInt32, nv_subnet>
    public let ports: BPFMap<UInt32, nv_port>
    public let portAddresses: BPFMap<nv_port_ca_key, UInt32>
    public let routes: BPFMap<nv_route_key, nv_route_val>
    public let localPAs: BPFMap<nv_pa_key, UInt32>
    public let config: BPFMap<UInt32, nv_config>
    public let vsidStats: BPFMap<UInt32, nv_vsid_stats>
    public let dropStats: BPFMap<UInt32, nv_reason_stats>
    public let exceptionStats: BPFMap<UInt32, nv_reason_stats>
    public let exceptionRingFD: Int32

    /// The bpffs directory this instance's maps are pinned in, if any.
    public let pinDirectory: String?

    /// Loads the programs. With `pinDirectory` (a directory on bpffs, one per instance), every
    /// map is pinned there, and maps already pinned there are reused: a second process, or the
    /// same one after a restart, sees the same policy and counters while the data path runs on.
    public init(options: LoadOptions = LoadOptions(), pinDirectory: String? = nil) throws {
        self.pinDirectory = pinDirectory
        nv_libbpf_capture_start()
        _ = nv_libbpf_capture_text()
        var openOpts = bpf_object_open_opts()
        openOpts.sz = nv_sizeof_open_opts()
        guard let s = nvgre__open_opts(&openOpts) else {
            throw DatapathError("open the embedded BPF object", errno: errno,
                                detail: String(cString: nv_libbpf_capture_text()))
        }
        let m = s.pointee.maps
        let sizes: [(OpaquePointer?, UInt32)] = [
            (m.lookups, options.maxLookups), (m.subnets, options.maxSubnets),
            (m.vsid_stats, options.maxSubnets), (m.ports, options.maxPorts),
            (m.port_cas, options.maxPortAddresses), (m.routes, options.maxRoutes),
            (m.exceptions, options.exceptionRingBytes),
        ]
        for (map, size) in sizes where bpf_map__set_max_entries(map, size) != 0 {
            nvgre__destroy(s)
            throw DatapathError("set the size of map \(String(cString: bpf_map__name(map)))", errno: errno)
        }
        s.pointee.rodata.pointee.nv_trace_enabled = options.trace ? 1 : 0
        if let dir = pinDirectory {
            do {
                try Self.preparePinDirectory(dir)
                for (map, _) in sizes + [(m.config, 0), (m.local_pas, 0), (m.drop_stats, 0), (m.exc_stats, 0)] {
                    let name = String(cString: bpf_map__name(map))
                    try check("set the pin path of map \(name)", bpf_map__set_pin_path(map, "\(dir)/\(name)"))
                }
            } catch {
                nvgre__destroy(s)
                throw error
            }
        }
        let rc = nvgre__load(s)
        if rc != 0 {
            let log = String(cString: nv_libbpf_capture_text())
            nvgre__destroy(s)
            throw DatapathError.fromReturn("load the XDP programs (verifier log follows)", rc, detail: log)
        }
        skel = s
        func fd(_ map: OpaquePointer?) -> Int32 { bpf_map__fd(map) }
        lookups = BPFMap(fd: fd(m.lookups), name: "lookups")
        subnets = BPFMap(fd: fd(m.subnets), name: "subnets")
        ports = BPFMap(fd: fd(m.ports), name: "ports")
        portAddresses = BPFMap(fd: fd(m.port_cas), name: "port_cas")
        routes = BPFMap(fd: fd(m.routes), name: "routes")
        localPAs = BPFMap(fd: fd(m.local_pas), name: "local_pas")
        config = BPFMap(fd: fd(m.config), name: "config")
        vsidStats = BPFMap(fd: fd(m.vsid_stats), name: "vsid_stats", perCPU: true)
        dropStats = BPFMap(fd: fd(m.drop_stats), name: "drop_stats", perCPU: true)
        exceptionStats = BPFMap(fd: fd(m.exc_stats), name: "exc_stats", perCPU: true)
        exceptionRingFD = fd(m.exceptions)
    }

    deinit { nvgre__destroy(skel) }

    /// bpffs must be mounted, and the instance directory must exist on it.
    static func preparePinDirectory(_ dir: String) throws {
        var fs = statfs()
        let parent = dir.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
        if statfs(parent, &fs) != 0 { throw DatapathError("check bpffs at \(parent)", errno: errno) }
        if fs.f_type != 0xcafe4a11 { // BPF_FS_MAGIC
            throw DatapathError("use \(parent) for pinning", errno: 0,
                                detail: "\(parent) is not a bpffs mount; mount it: mount -t bpf bpf /sys/fs/bpf")
        }
        if mkdir(dir, 0o700) != 0 && errno != EEXIST {
            throw DatapathError("create the instance directory \(dir) on bpffs", errno: errno)
        }
    }

    /// Removes every pin in an instance directory and the directory itself. Pinned XDP links
    /// go with it, which detaches their programs once no process holds them open.
    public static func removePins(at dir: String) throws {
        guard let d = opendir(dir) else {
            if errno == ENOENT { return }
            throw DatapathError("open the instance directory \(dir)", errno: errno)
        }
        var names: [String] = []
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
            if name != "." && name != ".." { names.append(name) }
        }
        closedir(d)
        for n in names where unlink("\(dir)/\(n)") != 0 {
            throw DatapathError("remove the pin \(dir)/\(n)", errno: errno)
        }
        if rmdir(dir) != 0 { throw DatapathError("remove the instance directory \(dir)", errno: errno) }
    }

    public func programFD(_ program: Program) -> Int32 {
        let p = skel.pointee.progs
        switch program {
        case .fromVM: return bpf_program__fd(p.nv_from_vm)
        case .fromFabric: return bpf_program__fd(p.nv_from_fabric)
        case .barePass: return bpf_program__fd(p.nv_bare_pass)
        case .bareTX: return bpf_program__fd(p.nv_bare_tx)
        }
    }

    // MARK: counters

    /// A reason's packets and bytes summed over all CPUs.
    public func dropCount(_ reason: nv_drop_reason) -> (packets: UInt64, bytes: UInt64) {
        sum(dropStats.lookupPerCPU(reason.rawValue))
    }

    public func exceptionCount(_ reason: nv_exception_reason) -> (packets: UInt64, bytes: UInt64) {
        sum(exceptionStats.lookupPerCPU(reason.rawValue))
    }

    /// Per-VSID counters of one stats slot summed over all CPUs, by counter id.
    public func vsidCounters(slot: UInt32) -> [nv_vsid_counter: (packets: UInt64, bytes: UInt64)] {
        var out: [nv_vsid_counter: (packets: UInt64, bytes: UInt64)] = [:]
        let perCPU = vsidStats.lookupPerCPU(slot)
        for c in 0..<Int(NV_CNT_MAX.rawValue) {
            var p: UInt64 = 0, b: UInt64 = 0
            for var s in perCPU {
                withUnsafeBytes(of: &s.packets) { p += $0.load(fromByteOffset: c * 8, as: UInt64.self) }
                withUnsafeBytes(of: &s.bytes) { b += $0.load(fromByteOffset: c * 8, as: UInt64.self) }
            }
            out[nv_vsid_counter(UInt32(c))] = (p, b)
        }
        return out
    }

    private func sum(_ values: [nv_reason_stats]) -> (packets: UInt64, bytes: UInt64) {
        values.reduce((0, 0)) { ($0.0 + $1.packets, $0.1 + $1.bytes) }
    }
}

extension nv_vsid_counter: @retroactive Hashable {}
