#!/usr/bin/python3
"""scapy's view of NVGRE for the integration tests (an independent decoder and sender).

  nvgre_scapy.py decode FILE.pcap
      One JSON object per GRE frame: outer addresses, the GRE flags word and protocol as
      they are on the wire, VSID and FlowID split from the key, the inner frame's MACs,
      addresses and protocol.
  nvgre_scapy.py segments FILE.pcap
      One JSON object per GRE frame carrying TCP or UDP: the outer IP length, DF, VSID,
      FlowID, the inner ports and payload length, and whether the inner TCP/UDP checksum is
      right (scapy computes it afresh and compares).
  nvgre_scapy.py sizes FILE.pcap
      The number of frames and the longest one, as captured.
  nvgre_scapy.py arp-replies FILE.pcap
      One JSON object per GRE frame carrying an ARP reply: outer addresses, VSID, and the
      reply's sender MAC and address and target MAC and address.
  nvgre_scapy.py inject-arp IFACE DST_MAC OUTER_SRC OUTER_DST VSID SENDER_MAC SENDER_IP TARGET_IP
      Builds an NVGRE frame carrying a broadcast ARP request, as an L2 endpoint (Open vSwitch)
      floods a VM's, and sends it out of IFACE.
  nvgre_scapy.py inject IFACE DST_MAC OUTER_SRC OUTER_DST VSID INNER_SRC_MAC INNER_DST_MAC INNER_SRC INNER_DST DPORT PAYLOAD
      Builds an NVGRE frame carrying UDP and sends it out of IFACE.
"""
import json
import struct
import sys

from scapy.all import ARP, GRE, IP, TCP, UDP, Ether, IPv6, get_if_hwaddr, rdpcap, sendp


def gre_frames(path):
    """Each GRE frame of the capture as (packet, outer IP header, GRE flags word, GRE protocol,
    GRE key, inner Ethernet frame), the GRE header read from its bytes as on the wire."""
    for pkt in rdpcap(path):
        if GRE not in pkt:
            continue
        raw = bytes(pkt[GRE])
        flags, proto, key = struct.unpack("!HHI", raw[:8])
        yield pkt, (pkt[IP] if IP in pkt else pkt[IPv6]), flags, proto, key, Ether(raw[8:])


def decode(path):
    for pkt, outer, flags, proto, key, inner in gre_frames(path):
        l3 = inner[IP] if IP in inner else (inner[IPv6] if IPv6 in inner else None)
        print(json.dumps({
            "outer_version": 4 if IP in pkt else 6,
            "outer_src": outer.src, "outer_dst": outer.dst,
            "gre_flags": flags, "gre_proto": proto,
            "vsid": key >> 8, "flow_id": key & 0xFF,
            "inner_src_mac": inner.src, "inner_dst_mac": inner.dst,
            "inner_src": l3.src if l3 is not None else None,
            "inner_dst": l3.dst if l3 is not None else None,
        }))


def segments(path):
    for pkt, outer, _, _, key, inner in gre_frames(path):
        l4_type = TCP if TCP in inner else (UDP if UDP in inner else None)
        if l4_type is None:
            continue
        l4 = inner[l4_type]
        fresh = inner.copy()
        del fresh[l4_type].chksum
        recomputed = Ether(bytes(fresh))[l4_type].chksum
        print(json.dumps({
            "outer_len": outer.len if IP in pkt else outer.plen + 40,
            "df": bool(IP in pkt and outer.flags.DF),
            "vsid": key >> 8, "flow_id": key & 0xFF,
            "proto": "tcp" if l4_type is TCP else "udp",
            "sport": l4.sport, "dport": l4.dport, "payload": len(bytes(l4.payload)),
            "checksum_ok": recomputed == l4.chksum,
        }))


def arp_replies(path):
    for _, outer, _, _, key, inner in gre_frames(path):
        if ARP not in inner or inner[ARP].op != 2:
            continue
        a = inner[ARP]
        print(json.dumps({
            "outer_src": outer.src, "outer_dst": outer.dst, "vsid": key >> 8,
            "inner_dst_mac": inner.dst, "hwsrc": a.hwsrc, "psrc": a.psrc, "hwdst": a.hwdst, "pdst": a.pdst,
        }))


def inject_arp(iface, dst_mac, outer_src, outer_dst, vsid, sender_mac, sender_ip, target_ip):
    inner = (Ether(src=sender_mac, dst="ff:ff:ff:ff:ff:ff")
             / ARP(op=1, hwsrc=sender_mac, psrc=sender_ip, hwdst="00:00:00:00:00:00", pdst=target_ip))
    gre = GRE(key_present=1, proto=0x6558, key=(int(vsid) << 8) | 0x2A)
    frame = Ether(src=get_if_hwaddr(iface), dst=dst_mac) / IP(src=outer_src, dst=outer_dst, flags="DF") / gre / inner
    sendp(frame, iface=iface, verbose=False)


def sizes(path):
    frames = rdpcap(path)
    print(json.dumps({"count": len(frames), "max": max((len(p) for p in frames), default=0)}))


def inject(iface, dst_mac, outer_src, outer_dst, vsid, inner_src_mac, inner_dst_mac, inner_src, inner_dst, dport, payload):
    inner = (Ether(src=inner_src_mac, dst=inner_dst_mac) / IP(src=inner_src, dst=inner_dst)
             / UDP(sport=40001, dport=int(dport)) / payload.encode())
    # key_present gives the 0x2000 flags word; the key is VSID << 8 | FlowID.
    gre = GRE(key_present=1, proto=0x6558, key=(int(vsid) << 8) | 0x2A)
    frame = Ether(src=get_if_hwaddr(iface), dst=dst_mac) / IP(src=outer_src, dst=outer_dst, flags="DF") / gre / inner
    sendp(frame, iface=iface, verbose=False)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] in ("decode", "segments", "sizes", "arp-replies"):
        {"decode": decode, "segments": segments, "sizes": sizes, "arp-replies": arp_replies}[sys.argv[1]](sys.argv[2])
    elif len(sys.argv) == 10 and sys.argv[1] == "inject-arp":
        inject_arp(*sys.argv[2:])
    elif len(sys.argv) == 13 and sys.argv[1] == "inject":
        inject(*sys.argv[2:])
    else:
        sys.exit(__doc__)
