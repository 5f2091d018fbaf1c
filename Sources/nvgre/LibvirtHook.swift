import ArgumentParser
import Foundation
import NvgreControl
import NvgrePolicy

/// `nvgre libvirt-hook`: what contrib/libvirt/qemu-hook runs as libvirt's qemu hook
/// (/etc/libvirt/hooks/qemu), with libvirt's arguments and the domain's XML on standard
/// input. A VM whose XML carries our metadata (LibvirtDomain) gets a port per tap when it
/// has started (and when libvirtd reconnects to it), and loses them when it stops.
struct LibvirtHook: NvgreCommand {
    static let configuration = CommandConfiguration(
        commandName: "libvirt-hook",
        abstract: "libvirt's qemu hook: a VM's taps become ports when it starts, and stop being ports when it stops.",
        discussion: """
            Called by libvirt as /etc/libvirt/hooks/qemu DOMAIN OPERATION SUB-OPERATION EXTRA with the domain XML \
            on standard input (install: link share/nvgre/libvirt-qemu-hook there). On started and reconnect, each \
            <nvgre:port mac=... vsid=...> of the domain's <metadata> (namespace \(LibvirtDomain.namespace), \
            optional instance="NAME" on <nvgre:ports>) becomes a port on the tap of the interface with that MAC, \
            with its <nvgre:address> elements; on stopped and release those ports are deleted. Other operations, \
            and domains without the metadata, are left alone. The VM's lookup records must exist (from the \
            policy or the store).
            """)

    @OptionGroup var global: GlobalOptions
    @Argument(help: "The domain's name.") var domain: String
    @Argument(help: "libvirt's operation (prepare, start, started, stopped, release, reconnect, ...).")
    var operation: String
    @Argument(help: "libvirt's sub-operation (begin, end, ...).") var subOperation = "-"
    @Argument(help: "libvirt's extra argument.") var extra = "-"

    static let plugging: Set = ["started", "reconnect", "attach"]
    static let unplugging: Set = ["stopped", "release"]

    func execute() throws {
        let plug = Self.plugging.contains(operation)
        guard plug || Self.unplugging.contains(operation) else { return }
        do {
            try change(plug: plug)
        } catch  where operation == "reconnect" {
            // libvirt kills a running VM whose reconnect hook fails: say what is wrong, keep it.
            printError("warning: domain \(domain): its ports were not checked on reconnect: \(error)")
        }
    }

    private func change(plug: Bool) throws {
        let xml = FileHandle.standardInput.readDataToEndOfFile()
        let d = try LibvirtDomain.parse(xml, domain: domain)
        if d.ports.isEmpty { return }  // not a VM of ours
        var g = global
        if let name = d.instance { g.instance = name }
        try g.enter()
        let running = Instance.isRunning(g.instance) || UserspaceInstance.exists(g.instance)
        // At the end of a host's shutdown the instance may be gone already: nothing to undo.
        if !plug && !running { return }
        // Read, change and apply in one writer turn: two VMs starting at once each keep
        // the other's port.
        let turn = try WriterTurn.take(instance: g.instance, doing: commandLineForOthers())
        defer { turn?.release() }
        if plug {
            let ports = try d.vmPorts()
            try edit(g) { p in
                // A reconnect finds them in place: replaced by the same, nothing changes.
                p.ports.removeAll { old in ports.contains { $0.interface == old.interface || $0.mac == old.mac } }
                p.ports += ports
            }
        } else {
            let gone = try d.ports.enumerated().map { i, port in
                (
                    mac: try parseMAC(port.mac, "metadata port[\(i)].mac"),
                    vsid: try parseVSID(port.vsid, "metadata port[\(i)].vsid")
                )
            }
            try edit(g) { p in p.ports.removeAll { old in gone.contains { $0.mac == old.mac && $0.vsid == old.vsid } } }
        }
    }
}
