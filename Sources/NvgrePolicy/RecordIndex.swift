import NvgreWire

/// Lookup records by (VSID, customer address), for validating a million of them: an
/// open-addressed table of record numbers (at most 8 bytes per record), compared against
/// the records themselves and hashed with a few multiplications. A dictionary keyed by
/// (VSID, address) took a third of the validation's time and 64 MB.
struct RecordIndex {
    private var slots: [Int32]  // record number + 1; 0 is empty

    init(capacity: Int) {
        var n = 16
        while n < capacity * 2 { n <<= 1 }
        slots = [Int32](repeating: 0, count: n)
    }

    private static func hash(_ vsid: UInt32, _ address: IPAddress) -> Int {
        let (high, low) = address.words
        var h = (UInt64(vsid) ^ 0x9E37_79B9_7F4A_7C15) &* 0xFF51_AFD7_ED55_8CCD
        h = (h ^ high) &* 0xC4CE_B9FE_1A85_EC53
        h = (h ^ low ^ UInt64(address.family.rawValue)) &* 0xFF51_AFD7_ED55_8CCD
        return Int(truncatingIfNeeded: h ^ (h >> 29))
    }

    /// Adds record `i` of `records`, unless one with its VSID and address is there already:
    /// then returns that one's number and adds nothing.
    mutating func insert(_ i: Int, of records: [LookupRecord]) -> Int? {
        let r = records[i]
        let mask = slots.count - 1
        var p = Self.hash(r.vsid, r.customerAddress) & mask
        while slots[p] != 0 {
            let j = Int(slots[p]) - 1
            if records[j].vsid == r.vsid && records[j].customerAddress == r.customerAddress { return j }
            p = (p + 1) & mask
        }
        slots[p] = Int32(i + 1)
        return nil
    }

    func find(vsid: UInt32, address: IPAddress, in records: [LookupRecord]) -> Int? {
        let mask = slots.count - 1
        var p = Self.hash(vsid, address) & mask
        while slots[p] != 0 {
            let j = Int(slots[p]) - 1
            if records[j].vsid == vsid && records[j].customerAddress == address { return j }
            p = (p + 1) & mask
        }
        return nil
    }
}
