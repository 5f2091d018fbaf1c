#!/usr/bin/env bash
# Installs the Debian packages the build and the tests need (only those missing) and mounts
# bpffs. Called by `make` and by .ci/run; safe to run again.
set -euo pipefail

packages=(
  libbpf-dev libelf-dev zlib1g-dev clang-14 bpftool   # BPF build and skeleton
  iproute2 iputils-ping ethtool procps                # namespaces and traffic in tests
  tcpdump tshark python3-scapy                         # independent decoders
  gnuplot-nox                                         # the benchmark chart
  iperf3                                              # TCP between VMs in the benchmark
  linux-perf                                          # the benchmark's allocation counts
  openvswitch-switch iputils-arping                   # a foreign NVGRE endpoint in the tests
  libcap2-bin                                         # capsh: a host without BPF privileges
  nftables                                            # the userspace path's host stack guard
  etcd-server etcd-client                             # the store of many hosts (tests run their own cluster)
  prometheus curl                                     # a real Prometheus scraping `--metrics` in the tests
  systemd                                             # systemd-analyze verify of the installed units
)

# --build: only what building needs (make install on a host that runs nvgre, not its tests).
if [ "${1:-}" = "--build" ]; then
  packages=(libbpf-dev libelf-dev zlib1g-dev clang-14 bpftool)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Packages with services (openvswitch-switch) are installed for the tests, which run their
  # own daemons in namespaces: nothing is started on the host while installing.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! mountpoint -q /sys/fs/bpf; then
  mount -t bpf bpf /sys/fs/bpf
fi
