/// The header a virtio-net device puts before each frame (virtio 1.x, struct
/// virtio_net_hdr, 10 bytes, little-endian), as a tap with IFF_VNET_HDR exchanges it with
/// the hypervisor: it says which checksum the host is to complete and how a GSO frame is to
/// be cut into segments.
public struct VirtioNetHeader: Equatable, Sendable {
    public static let length = 10
    public static let needsChecksum: UInt8 = 1  // VIRTIO_NET_HDR_F_NEEDS_CSUM
    public static let gsoNone: UInt8 = 0
    public static let gsoTCPv4: UInt8 = 1
    public static let gsoTCPv6: UInt8 = 4
    public static let gsoUDPL4: UInt8 = 5  // UDP segmentation (a socket's UDP_SEGMENT)

    public var flags: UInt8 = 0
    public var gsoType: UInt8 = VirtioNetHeader.gsoNone
    public var headerLength: UInt16 = 0  // Ethernet + IP + TCP headers of a GSO frame
    public var gsoSize: UInt16 = 0  // payload bytes per segment
    public var checksumStart: UInt16 = 0  // where the checksummed part starts
    public var checksumOffset: UInt16 = 0  // where in it the checksum goes

    public init(
        flags: UInt8 = 0, gsoType: UInt8 = VirtioNetHeader.gsoNone, headerLength: UInt16 = 0, gsoSize: UInt16 = 0,
        checksumStart: UInt16 = 0, checksumOffset: UInt16 = 0
    ) {
        self.flags = flags
        self.gsoType = gsoType
        self.headerLength = headerLength
        self.gsoSize = gsoSize
        self.checksumStart = checksumStart
        self.checksumOffset = checksumOffset
    }

    public init?(_ bytes: ArraySlice<UInt8>) {
        guard let h = bytes.withUnsafeBytes({ VirtioNetHeader($0) }) else { return nil }
        self = h
    }

    /// From the first ten bytes of `raw` (a packet ring's memory: read in place, no copy).
    public init?(_ raw: UnsafeRawBufferPointer) {
        guard raw.count >= Self.length else { return nil }
        func le16(_ i: Int) -> UInt16 { UInt16(raw[i]) | UInt16(raw[i + 1]) << 8 }
        self.init(
            flags: raw[0], gsoType: raw[1], headerLength: le16(2), gsoSize: le16(4), checksumStart: le16(6),
            checksumOffset: le16(8))
    }

    public var bytes: [UInt8] {
        var b = [flags, gsoType]
        for v in [headerLength, gsoSize, checksumStart, checksumOffset] { b += [UInt8(v & 0xff), UInt8(v >> 8)] }
        return b
    }
}
