import CNvgre
import Foundation
import NvgreDatapath
import NvgreWire

#if canImport(Glibc)
    import Glibc
#endif

/// A VM's virtio NIC as KVM/QEMU drive it: a tap with the virtio-net header (IFF_VNET_HDR)
/// and checksum and TSO offload on (TUNSETOFFLOAD), opened by this process in a namespace.
/// The tap is the VM's port on the host. A frame written is a frame the VM sends, its header
/// saying which checksum is left to the host and how a GSO frame is cut; a frame read is
/// one the host delivers to the VM. The tap lives while this object does.
public final class TapVM {
    public let name: String
    private let fd: Int32

    public init(name: String, in ns: String) throws {
        self.name = name
        fd = try NetworkNamespace.run(in: ns) {
            let fd = nv_tap_open(name)
            if fd < 0 { throw DatapathError("create tap \(name) with the virtio-net header", errno: -fd) }
            return fd
        }
    }

    deinit { close(fd) }

    /// Sends one frame as the VM: the header, then the frame, in one write.
    public func send(_ frame: [UInt8], header: VirtioNetHeader) throws {
        let packet = header.bytes + frame
        if write(fd, packet, packet.count) != packet.count { throw DatapathError("write to tap \(name)", errno: errno) }
    }

    /// The next frame the host delivers to the VM within `timeout` seconds, with its header.
    public func receive(timeout: Double) -> (header: VirtioNetHeader, frame: [UInt8])? {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&p, 1, Int32(timeout * 1000)) > 0 else { return nil }
        var buf = [UInt8](repeating: 0, count: 70_000)
        let n = read(fd, &buf, buf.count)
        guard n > VirtioNetHeader.length, let header = VirtioNetHeader(buf[0..<VirtioNetHeader.length]) else {
            return nil
        }
        return (header, Array(buf[VirtioNetHeader.length..<n]))
    }
}
