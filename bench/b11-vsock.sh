#!/bin/bash
# B11: virtio-vsock throughput between kite's Linux guest and a host program, beside socat over
# a Unix socket on the same host in the same run.
#
#   bench/b11-vsock.sh [runs]      (default 3; needs a /dev/kvm that runs guest userspace:
#                                   hardware or the nested VM of scripts/kvm-vm; and socat)
# Env: BUILD, KITE, KITE_GUEST_KERNEL; BYTES per transfer (default 16 MiB).
#
# Per run, kite's guest (1 vCPU, 256 MiB, --vsock cid=3,uds=...) runs
# guest-firmware/linux/tests/vsock with kite.vsock_bytes=BYTES:
#   to host:  the guest's vsock-test sends BYTES to (CID 2, port 6000); socat on the Unix socket
#             <uds>_6000 writes them to /dev/null; MiB/s from the guest's own clock
#             (/proc/uptime, 10 ms resolution) around connect + send + the host's close.
#   to guest: once the guest listens on port 5000, socat connects to <uds>, writes
#             "CONNECT 5000" and BYTES of zeros; MiB/s from the host's clock until the guest's
#             checksum line comes back.
# The guest's port 6001 finds nothing listening (the e2e test's reset case: one RST here).
# Peer: socat to socat over a Unix socket on this host, BYTES from /dev/zero to /dev/null, timed
# the same way, in the same run. The ratio is kite/peer. On the nested VM the guest's own CPU
# (TCG-emulated SVM) bounds the vsock figure far below the host's: read the ratio as "how far
# from a host-local socket", not as what hardware gives. Medians of `runs`.
set -euo pipefail

bench_name=b11
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
runs=${1:-3}
bytes=${BYTES:-16777216}
command -v socat >/dev/null || die "socat is not installed (apt-get install socat)"
bench_linux_guest

mibs() { awk -v b="$bytes" -v s="$1" 'BEGIN { printf "%.1f\n", (s > 0 ? b / 1048576 / s : 0) }'; }

# One boot; prints "to_host_mib_s to_guest_mib_s".
vsock_once() {
  local out=$work/out.$1 uds=$work/v$1.sock t0 t1 pid sink
  socat -u "UNIX-LISTEN:${uds}_6000" OPEN:/dev/null &
  sink=$!
  pids+=("$sink")
  "$kite" run --kernel "$kernel" --initrd "$initrd" --memory 256M --serial stdio \
    --vsock "cid=3,uds=$uds" \
    --cmdline "console=ttyS0 reboot=k panic=1 quiet kite.test=vsock kite.vsock_bytes=$bytes" \
    </dev/null >"$out" 2>"$out.err" &
  pid=$!
  pids+=("$pid")
  wait_for "$out" "kite-guest: vsock to-host seconds" 300 >/dev/null
  local to_host_s
  to_host_s=$(sed -n 's/.*kite-guest: vsock to-host seconds \([0-9.]*\).*/\1/p' "$out")
  wait_for "$out" "vsock-test: listening on port 5000" 120 >/dev/null
  t0=$(now_ns)
  { printf 'CONNECT 5000\n'; head -c "$bytes" /dev/zero; } |
    socat -t 120 - "UNIX-CONNECT:$uds" >"$out.reply"
  t1=$(now_ns)
  grep -q "^$bytes " "$out.reply" || die "the guest did not report $bytes bytes: $(cat "$out.reply")"
  wait_for "$out" "kite-guest: powering off" 120 >/dev/null
  wait "$pid" || true
  kill "$sink" 2>/dev/null || true
  echo "$(mibs "$to_host_s") $(mibs "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print (b - a) / 1e9 }')")"
}

# socat -> socat over a Unix socket; prints MiB/s.
peer_once() {
  local sock=$work/peer$1.sock t0 t1 sink
  socat -u "UNIX-LISTEN:$sock" OPEN:/dev/null &
  sink=$!
  until [[ -S $sock ]]; do sleep 0.005; done
  t0=$(now_ns)
  head -c "$bytes" /dev/zero | socat -u - "UNIX-CONNECT:$sock"
  wait "$sink"
  t1=$(now_ns)
  mibs "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print (b - a) / 1e9 }')"
}

rows=() peers=()
for ((r = 1; r <= runs; r++)); do
  rows+=("$(vsock_once "$r")")
  peers+=("$(peer_once "$r")")
done
col() { printf '%s\n' "${rows[@]}" | awk -v c="$1" '{ print $c }' | median; }
peer=$(printf '%s\n' "${peers[@]}" | median)
host=$(col 1) guest=$(col 2)
echo "B11 vsock ($(basename "$kernel"), 1 vCPU, $((bytes / 1048576)) MiB per transfer; median of $runs)"
printf '  %-22s %14s %16s %8s\n' "direction" "kite MiB/s" "socat unix MiB/s" "ratio"
for row in "guest -> host:$host" "host -> guest:$guest"; do
  printf '  %-22s %14s %16s %8s\n' "${row%%:*}" "${row##*:}" "$peer" \
    "$(awk -v k="${row##*:}" -v p="$peer" 'BEGIN { printf "%.3f", (p > 0 ? k / p : 0) }')"
done
