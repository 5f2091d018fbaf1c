import NvgreDatapath
import NvgreWire

/// A VM's frame whose transport checksum the host is to finish (checksum offload on, as
/// VMs have it by default): where the checksummed part starts and where in it the checksum
/// goes, from the frame's virtio-net header. Finished in the frame's own array, as the
/// kernel's skb_checksum_help does, with no allocation.
struct PartialChecksum {
    let start: Int
    let offset: Int

    init(start: Int, offset: Int) {
        self.start = start
        self.offset = offset
    }

    /// nil: the frame has no partial checksum, is a GSO frame, its header points outside it,
    /// or the checksum is not TCP's or UDP's (SCTP's CRC32c sits at offset 8): such a frame
    /// goes the long way, UserspaceForwarder.wireFrames.
    init?(_ frame: PacketRing.Frame) {
        guard let v = frame.vnet, v.gsoType == VirtioNetHeader.gsoNone,
            v.flags & VirtioNetHeader.needsChecksum != 0, v.checksumOffset == 16 || v.checksumOffset == 6,
            Int(v.checksumStart) + Int(v.checksumOffset) + 2 <= frame.bytes.count
        else { return nil }
        self.init(start: Int(v.checksumStart), offset: Int(v.checksumOffset))
    }

    /// The ones' complement sum from `start` to the end (the checksum field holds the
    /// pseudo-header's sum already), folded and inverted, into the field; 0 goes as 0xffff.
    func finish(_ f: inout [UInt8]) {
        guard start + offset + 2 <= f.count else { return }
        var sum: UInt64 = 0
        var i = start
        while i + 1 < f.count {
            sum += UInt64(f[i]) << 8 | UInt64(f[i + 1])
            i += 2
        }
        if i < f.count { sum += UInt64(f[i]) << 8 }
        while sum > 0xffff { sum = (sum & 0xffff) + (sum >> 16) }
        let checksum = ~UInt16(sum)
        let value = checksum == 0 ? 0xffff : checksum
        f[start + offset] = UInt8(value >> 8)
        f[start + offset + 1] = UInt8(value & 0xff)
    }
}
