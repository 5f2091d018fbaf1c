import NvgrePolicy
import NvgreWire
import Testing

/// Which VMs a host sees arrive or leave as the store's policy changes under it, and where
/// an announcement into a VSID goes.
struct MigrationTests {
    static let paA: IPAddress = "198.18.0.1"
    static let paC: IPAddress = "198.18.0.4"
    static let vm = MACAddress(parsing: "02:00:00:00:01:01")!

    /// Host C's policy with port red1 (198.19.1.1 and 2001:db8:19:1::1); the VM's records
    /// name `pa`; another VM of VSID 5001 runs on B, a third of VSID 6001 on D.
    static func hostC(recordsAt pa: IPAddress, moving: Bool) -> Policy {
        var p = Policy()
        p.providerAddresses = [ProviderAddress(address: paC, interface: "ul")]
        p.ports = [
            VMPort(
                interface: "red1", vsid: 5001, mac: vm, addresses: ["198.19.1.1", "2001:db8:19:1::1"], moving: moving)
        ]
        p.lookupRecords = [
            LookupRecord(vsid: 5001, customerAddress: "198.19.1.1", providerAddress: pa, mac: vm),
            LookupRecord(vsid: 5001, customerAddress: "2001:db8:19:1::1", providerAddress: pa, mac: vm),
            LookupRecord(
                vsid: 5001, customerAddress: "198.19.1.2", providerAddress: "198.18.0.2",
                mac: MACAddress(parsing: "02:00:00:00:01:02")!),
            LookupRecord(
                vsid: 5001, customerAddress: "198.19.1.3", providerAddress: "198.18.0.2",
                mac: MACAddress(parsing: "02:00:00:00:01:03")!),
            LookupRecord(
                vsid: 6001, customerAddress: "198.19.1.9", providerAddress: "198.18.0.5",
                mac: MACAddress(parsing: "02:00:00:00:01:09")!)
        ]
        return p
    }

    @Test func aVMArrivesWhenItsRecordsSwitchToThisHost() {
        let prepared = Self.hostC(recordsAt: Self.paA, moving: true)
        let switched = Self.hostC(recordsAt: Self.paC, moving: false)
        let arrived = switched.vmsArrived(since: prepared)
        #expect(Set(arrived.map(\.customerAddress)) == ["198.19.1.1", "2001:db8:19:1::1"])
        #expect(arrived.allSatisfy { $0.providerAddress == Self.paC && $0.mac == Self.vm })
        // Nothing arrives twice, and a VM that was always here never arrives.
        #expect(switched.vmsArrived(since: switched).isEmpty)
        #expect(prepared.vmsArrived(since: prepared).isEmpty)
        // A new VM (no record before) is not an arrival from another host.
        var empty = switched
        empty.lookupRecords = []
        #expect(switched.vmsArrived(since: empty).isEmpty)
    }

    @Test func announcementsGoToEveryOtherHostOfTheVSIDOnce() {
        let switched = Self.hostC(recordsAt: Self.paC, moving: false)
        #expect(switched.peers(ofVSID: 5001) == ["198.18.0.2"])
        #expect(switched.peers(ofVSID: 6001) == ["198.18.0.5"])
        #expect(switched.peers(ofVSID: 7001).isEmpty)
    }
}
