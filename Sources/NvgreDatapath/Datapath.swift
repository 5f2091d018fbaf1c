import CNvgre
import Foundation

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
    public var maxNATFlows = UInt32(NV_DEFAULT_MAX_NAT_FLOWS)
    /// Programs write an `nv_trace` record into the XDP metadata before returning. For tests
    /// and `nvgre trace`; a live data path leaves it off.
    public var trace = false
    /// Use these maps (an instance's pins) for policy instead of creating new ones; counters
    /// and the exception ring stay this load's own. `nvgre trace` runs the live policy this
    /// way without touching the live counters.
    public var policyMapsFrom: DatapathMaps?
    /// Another build of the object (an ELF file with the same maps and programs) to load
    /// instead of the embedded one: `nvgre upgrade --object`.
    public var objectFile: String?

    public init() {}
}

/// Where a program runs: XDP in the driver, or tc (sched_cls) on the skb. VM ports run tc so
/// that the VM keeps its checksum and segmentation offload; the uplink and the external
/// interface run XDP.
public enum Hook: String, Sendable {
    case xdp
    case tc
}

/// The programs in the object.
public enum Program: String, CaseIterable, Sendable {
    case fromVM = "nv_from_vm"
    case fromFabric = "nv_from_fabric"
    case fromExternal = "nv_from_external"
    case barePass = "nv_bare_pass"
    case bareTX = "nv_bare_tx"
    case bareTCPass = "nv_bare_tc_pass"
    case fabricFlood = "nv_fabric_flood"

    public var hook: Hook { self == .fromVM || self == .bareTCPass || self == .fabricFlood ? .tc : .xdp }
}

/// One loaded instance of the BPF object (programs and maps), from the embedded skeleton.
/// Its maps are reached as `datapath.lookups` and so on (see DatapathMaps).
@dynamicMemberLookup
public final class Datapath {
    let skel: UnsafeMutablePointer<nvgre>
    public let maps: DatapathMaps

    public subscript<T>(dynamicMember path: KeyPath<DatapathMaps, T>) -> T { maps[keyPath: path] }

    /// The bpffs directory this instance's maps are pinned in, if any.
    public let pinDirectory: String?
    /// The ELF image of `LoadOptions.objectFile`, which libbpf reads until the object goes.
    private let objectImage: UnsafeMutableRawBufferPointer?

    /// Loads the programs. With `pinDirectory` (a directory on bpffs, one per instance), every
    /// map is pinned there, and maps already pinned there are reused: a second process, or the
    /// same one after a restart, sees the same policy and counters while the data path runs on.
    public init(options: LoadOptions = LoadOptions(), pinDirectory: String? = nil) throws {
        self.pinDirectory = pinDirectory
        nv_libbpf_capture_start()
        _ = nv_libbpf_capture_text()
        let (s, image) = try Self.open(options.objectFile)
        do {
            try Self.prepare(s, options: options, pinDirectory: pinDirectory)
        } catch {
            Self.destroy(s, image)
            throw error
        }
        let rc = nvgre__load(s)
        if rc != 0 {
            let log = String(cString: nv_libbpf_capture_text())
            Self.destroy(s, image)
            throw DatapathError.fromReturn("load the BPF programs (verifier log follows)", rc, detail: log)
        }
        skel = s
        objectImage = image
        maps = DatapathMaps { name in
            guard let map = bpf_object__find_map_by_name(s.pointee.obj, name) else { return -1 }
            return bpf_map__fd(map)
        }
        // A new instance's lookup records start as an empty table (a reused pin keeps its own).
        try maps.lookups.install(limit: options.maxLookups)
    }

    deinit { Self.destroy(skel, objectImage) }

    /// Opens the embedded object, or the one in `file` (its image returned: it must outlive
    /// the skeleton).
    private static func open(_ file: String?) throws -> (UnsafeMutablePointer<nvgre>, UnsafeMutableRawBufferPointer?) {
        var openOpts = bpf_object_open_opts()
        prepareOpts(&openOpts, size: nv_sizeof_open_opts())
        guard let file else {
            guard let s = nvgre__open_opts(&openOpts) else {
                throw DatapathError(
                    "open the embedded BPF object", errno: errno, detail: String(cString: nv_libbpf_capture_text()))
            }
            return (s, nil)
        }
        guard let data = FileManager.default.contents(atPath: file) else {
            throw DatapathError("read the BPF object \(file)", errno: errno == 0 ? ENOENT : errno)
        }
        let image = UnsafeMutableRawBufferPointer.allocate(byteCount: data.count, alignment: 16)
        _ = image.initializeMemory(as: UInt8.self, from: data)
        guard let s = nv_open_other_object(image.baseAddress, image.count, &openOpts) else {
            let e = errno
            image.deallocate()
            throw DatapathError(
                "open the BPF object \(file) (it must be a build of nvgre.bpf.c with the same maps and programs)",
                errno: e, detail: String(cString: nv_libbpf_capture_text()))
        }
        return (s, image)
    }

    private static func destroy(_ s: UnsafeMutablePointer<nvgre>, _ image: UnsafeMutableRawBufferPointer?) {
        nvgre__destroy(s)
        image?.deallocate()
    }

    /// Which build an object is (the embedded one, or `file`): its ABI version and build
    /// number, read without loading it.
    public static func objectIdentity(file: String?) throws -> (abi: UInt32, build: UInt32) {
        nv_libbpf_capture_start()
        let (s, image) = try open(file)
        defer { destroy(s, image) }
        let ro = s.pointee.rodata.pointee
        return (ro.nv_object_abi, ro.nv_object_build)
    }

    /// How an object lays out its maps (MapRegistry's), read without loading it.
    public static func mapLayouts(objectFile: String?) throws -> [String: (
        keySize: UInt32, valueSize: UInt32, type: UInt32
    )] {
        let (s, image) = try open(objectFile)
        defer { destroy(s, image) }
        var out: [String: (keySize: UInt32, valueSize: UInt32, type: UInt32)] = [:]
        for name in MapRegistry.names {
            guard let map = bpf_object__find_map_by_name(s.pointee.obj, name) else { continue }
            out[name] = (bpf_map__key_size(map), bpf_map__value_size(map), bpf_map__type(map).rawValue)
        }
        return out
    }

    /// The ABI version of the programs this binary embeds (nvgre_abi.h).
    public static let embeddedABI = UInt32(NV_ABI_VERSION)
    /// Their build number (nvgre_abi.h).
    public static let embeddedBuild = UInt32(NV_PROGRAM_BUILD)

    /// The version of the libbpf nvgre runs with, as "major.minor".
    public static var libbpfVersion: String { "\(libbpf_major_version()).\(libbpf_minor_version())" }

    /// This load's build (see objectIdentity).
    public var objectBuild: UInt32 { skel.pointee.rodata.pointee.nv_object_build }

    /// Before load, every map of MapRegistry: its size from the options, the instance's
    /// map reused by a tracing load, its pin path under the instance directory.
    private static func prepare(_ s: UnsafeMutablePointer<nvgre>, options: LoadOptions, pinDirectory: String?) throws {
        s.pointee.rodata.pointee.nv_trace_enabled = options.trace ? 1 : 0
        if let dir = pinDirectory { try preparePinDirectory(dir) }
        for name in MapRegistry.names {
            guard let map = bpf_object__find_map_by_name(s.pointee.obj, name) else {
                throw DatapathError("find map \(name) in the BPF object", errno: ENOENT)
            }
            // A map pinned already keeps its size (a reload reuses it); a new one gets the options'.
            let pinnedSize = pinDirectory.flatMap { pinnedMapInfo("\($0)/\(name)")?.max_entries }
            if let size = pinnedSize ?? MapRegistry.sizedBy[name].map({ options[keyPath: $0] }),
                bpf_map__set_max_entries(map, size) != 0
            {
                throw DatapathError("set the size of map \(name)", errno: errno)
            }
            if let shared = options.policyMapsFrom, !MapRegistry.belongsToOneLoad(type: bpf_map__type(map)),
                bpf_map__reuse_fd(map, shared.fd(name)) != 0
            {
                throw DatapathError("reuse the instance's map \(name)", errno: errno)
            }
            if let dir = pinDirectory {
                try check("set the pin path of map \(name)", bpf_map__set_pin_path(map, "\(dir)/\(name)"))
            }
        }
    }

    /// bpffs must be mounted, and the instance directory must exist on it.
    static func preparePinDirectory(_ dir: String) throws {
        var fs = statfs()
        let parent = dir.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
        if statfs(parent, &fs) != 0 { throw DatapathError("check bpffs at \(parent)", errno: errno) }
        if fs.f_type != 0xcafe4a11 {  // BPF_FS_MAGIC
            throw DatapathError(
                "use \(parent) for pinning", errno: 0,
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
            let name = withUnsafeBytes(of: e.pointee.d_name) {
                String(cString: $0.bindMemory(to: CChar.self).baseAddress!)
            }
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
        case .fromExternal: return bpf_program__fd(p.nv_from_external)
        case .barePass: return bpf_program__fd(p.nv_bare_pass)
        case .bareTX: return bpf_program__fd(p.nv_bare_tx)
        case .bareTCPass: return bpf_program__fd(p.nv_bare_tc_pass)
        case .fabricFlood: return bpf_program__fd(p.nv_fabric_flood)
        }
    }
}

/// The kernel's description of the map pinned at `path`; nil when nothing is pinned there.
public func pinnedMapInfo(_ path: String) -> bpf_map_info? {
    let fd = bpf_obj_get(path)
    if fd < 0 { return nil }
    defer { close(fd) }
    var info = bpf_map_info()
    var len = UInt32(MemoryLayout<bpf_map_info>.size)
    return bpf_obj_get_info_by_fd(fd, &info, &len) == 0 ? info : nil
}
