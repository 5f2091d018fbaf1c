#!/usr/bin/env bash
# Removes everything a lab run named PREFIX left: its network namespaces (with them its
# interfaces and XDP programs), its bpffs pins (with them its nvgre instances; their agents
# exit within a second), its state under /run/nvgre and the daemons the tests started there
# (Open vSwitch, etcd).
set -uo pipefail
prefix="${1:?usage: lab-cleanup.sh PREFIX}"
for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^${prefix}-" || true); do
  ip netns del "$ns" 2>/dev/null || true
done
# Open vSwitch daemons of the foreign-peer tests (their run directories hold pidfiles).
for pidfile in "/run/nvgre/${prefix}"*-ovs/*.pid; do
  [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
done
# etcd members of the store tests (pid files beside their data).
for pidfile in "/run/nvgre/${prefix}"*-etcd/*.pid; do
  [ -f "$pidfile" ] && kill -9 "$(cat "$pidfile")" 2>/dev/null || true
done
rm -rf "/sys/fs/bpf/${prefix}"* "/run/nvgre/${prefix}"* 2>/dev/null || true
