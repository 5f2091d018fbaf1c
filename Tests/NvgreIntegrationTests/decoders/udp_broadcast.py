#!/usr/bin/python3
"""A VM's broadcast traffic for the integration tests, with the kernel's own sockets.

  udp_broadcast.py listen PORT SECONDS
      Counts the UDP datagrams to PORT (any address, broadcast included) that arrive within
      SECONDS and prints the count; prints READY first, once it listens.
  udp_broadcast.py send IFACE PORT COUNT
      Sends COUNT datagrams to 255.255.255.255:PORT out of IFACE, as fast as it can, and
      prints how many the kernel took.
"""
import socket
import sys
import time


def listen(port, seconds):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind(("0.0.0.0", port))
    print("READY", flush=True)
    deadline = time.monotonic() + seconds
    n = 0
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        s.settimeout(left)
        try:
            s.recv(2048)
            n += 1
        except socket.timeout:
            break
    print(n, flush=True)


def send(iface, port, count):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.encode())
    sent = 0
    for i in range(count):
        try:
            s.sendto(b"broadcast %d" % i, ("255.255.255.255", port))
            sent += 1
        except OSError:
            pass
    print(sent, flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "listen":
        listen(int(sys.argv[2]), float(sys.argv[3]))
    elif sys.argv[1] == "send":
        send(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        sys.exit(__doc__)
