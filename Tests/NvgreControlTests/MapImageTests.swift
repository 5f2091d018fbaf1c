import CNvgre
import NvgreControl
import NvgreDatapath
import NvgreWire
import Testing

/// MapImage keeps entries packed behind its own index: it must behave as a dictionary of
/// raw keys and values would, whatever the order of sets, replacements and removals.
struct MapImageTests {
    @Test func behavesAsADictionaryUnderRandomChanges() {
        var image = MapImage()
        var model: [RawBytes: RawBytes] = [:]
        var state: UInt64 = 0x1234_5678
        func next() -> UInt64 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return state >> 33
        }
        for step in 0..<60_000 {
            let key = RawBytes(
                of: nv_lookup_key(vsid: 5000 + UInt32(next() % 4), ca: IPAddress(v4: [198, 19, 0, UInt8(next() % 256)]))
            )
            switch next() % 4 {
            case 0:
                image[key] = nil
                model[key] = nil
            default:
                let value = RawBytes(
                    of: nv_lookup_val(pa: IPAddress(v4: [198, 18, 0, UInt8(step % 256)]), mac: "02:00:00:00:00:01"))
                image[key] = value
                model[key] = value
            }
            if step % 5000 == 0 { #expect(image.entries == model) }
        }
        #expect(image.count == model.count)
        #expect(image.entries == model)
        for (k, v) in model { #expect(image[k] == v) }
        #expect(image == MapImage(model))
    }

    @Test func aMillionEntriesDiffIntoAddsChangesAndRemovals() {
        var live = MapImage(reserving: 200_000)
        var desired = MapImage(reserving: 200_000)
        for i in 0..<200_000 {
            let key = RawBytes(of: UInt32(i))
            if i < 150_000 { live[key] = RawBytes(of: UInt64(i)) }
            if i >= 50_000 { desired[key] = RawBytes(of: UInt64(i < 100_000 ? i : i + 1)) }
        }
        let c = MapChanges(from: live, to: desired)
        #expect(c.removed.count == 50_000)  // 0..<50,000
        #expect(c.changed.count == 50_000)  // 100,000..<150,000
        #expect(c.added.count == 50_000)  // 150,000..<200,000
        #expect(c.changed.allSatisfy { $0.value.load(as: UInt64.self) == $0.old.load(as: UInt64.self) + 1 })
        #expect(c.added.allSatisfy { $0.key.load(as: UInt32.self) >= 150_000 })
        #expect(MapChanges(from: desired, to: desired).isEmpty)
    }
}
