-- nvgre.lua: shows NVGRE's Virtual Subnet ID and FlowID (RFC 7637) in Wireshark and tshark,
-- which read the frames as GRE carrying Ethernet (protocol 0x6558) and show only the key.
--   tshark -X lua_script:contrib/nvgre.lua -r capture.pcap -T fields -e nvgre.vsid -e nvgre.flowid
-- or copy it into ~/.local/lib/wireshark/plugins/. Filters: nvgre.vsid == 5001, nvgre.flowid.
local nvgre = Proto("nvgre", "Network Virtualization using GRE (RFC 7637)")
local vsid_field = ProtoField.uint24("nvgre.vsid", "Virtual Subnet ID", base.DEC)
local flowid_field = ProtoField.uint8("nvgre.flowid", "FlowID", base.HEX)
nvgre.fields = { vsid_field, flowid_field }

local gre_proto = Field.new("gre.proto")
local gre_key = Field.new("gre.key")

-- After GRE is dissected: each GRE header of the frame carrying Ethernet with a key is
-- NVGRE, its key the 24-bit VSID then the 8-bit FlowID.
function nvgre.dissector(tvb, pinfo, tree)
    local protos = { gre_proto() }
    local keys = { gre_key() }
    for i, key in ipairs(keys) do
        local proto = protos[i]
        if proto and proto.value == 0x6558 and key.range and key.range:len() == 4 then
            local subtree = tree:add(nvgre, key.range, "NVGRE")
            local vsid = key.range(0, 3):uint()
            subtree:add(vsid_field, key.range(0, 3))
            subtree:add(flowid_field, key.range(3, 1))
            subtree:append_text(string.format(", VSID %d, FlowID 0x%02x", vsid, key.range(3, 1):uint()))
        end
    end
end

register_postdissector(nvgre)
