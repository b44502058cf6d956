#!/usr/bin/env bash
# B6 (shared/BENCHMARKS.md): the virtio-net device path, fake driver → queue → VirtioNet → tap,
# with 64 KiB TSO frames and 1500-byte frames, beside iperf3 over loopback in the same run.
#
#   bench/b6-virtio-net.sh [BUILD_DIR]     (default: build; needs BUILD_DIR/bench/b6_virtio_net,
#                                           root for the tap, and iperf3)
#
# kite: bench/b6_virtio_net (see its header): transmit only; the frames enter the host kernel
# on the tap interface and are dropped at the IP layer (their MAC is not the tap's); a packet
# socket reader on the tap confirms they arrived (drained %). "per core" uses the sending
# thread's CPU time, which includes the kernel's tap write and receive path.
# peer: iperf3 TCP over 127.0.0.1 (one stream, SECONDS s): the host's own network stack limit
# for one flow; "per core" = bits/s / (iperf3 client CPU% / 100), from iperf3's JSON.
# These are not the same work: iperf3 runs a full TCP stack at both ends; kite pushes
# pre-built frames through the device into the kernel. The ratio says how much headroom the
# device path leaves below what one host TCP flow achieves. Medians of RUNS runs (default 3).
# Target: >= 20 Gbit/s per core with offloads (tso64k).
set -euo pipefail

BUILD=${1:-build}
B6=${B6_BIN:-$BUILD/bench/b6_virtio_net}
RUNS=${RUNS:-3}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-3}
PORT=${B6_IPERF_PORT:-5299}

[[ -x $B6 ]] || { echo "b6_virtio_net not found at $B6 (build it first)" >&2; exit 1; }
[[ $(id -u) == 0 ]] || { echo "B6 needs root (it creates a tap interface)" >&2; exit 1; }
command -v iperf3 >/dev/null || { echo "iperf3 missing (apt-get install iperf3)" >&2; exit 1; }

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
field() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p"; }

# iperf_run -> "gbit_s gbit_s_per_core" of one run
iperf_run() {
  iperf3 -s -1 -p "$PORT" >/dev/null 2>&1 &
  local server=$!
  sleep 0.3
  iperf3 -c 127.0.0.1 -p "$PORT" -t "$SECONDS_PER_RUN" -J 2>/dev/null |
    python3 -c 'import json,sys
j = json.load(sys.stdin)["end"]
bps = j["sum_sent"]["bits_per_second"]
cpu = j["cpu_utilization_percent"]["host_total"] / 100
print("%.2f %.2f" % (bps / 1e9, bps / 1e9 / max(cpu, 1e-9)))'
  wait "$server" 2>/dev/null || true
}

declare -A kite_gbit kite_core kite_ns kite_drained
for mode in tso mtu; do
  out=()
  for ((i = 0; i < RUNS; i++)); do out+=("$("$B6" "$mode" "$SECONDS_PER_RUN")"); done
  kite_gbit[$mode]=$(printf '%s\n' "${out[@]}" | field gbit_s | median)
  kite_core[$mode]=$(printf '%s\n' "${out[@]}" | field cpu_gbit_s | median)
  kite_ns[$mode]=$(printf '%s\n' "${out[@]}" | field ns_cpu_per_kib | median)
  kite_drained[$mode]=$(printf '%s\n' "${out[@]}" | field drained_pct | median)
done
peer=()
for ((i = 0; i < RUNS; i++)); do peer+=("$(iperf_run)"); done
peer_gbit=$(printf '%s\n' "${peer[@]}" | awk '{ print $1 }' | median)
peer_core=$(printf '%s\n' "${peer[@]}" | awk '{ print $2 }' | median)

printf '\nB6 virtio-net TX path (medians of %d runs of %ss, %s cores)\n' "$RUNS" \
  "$SECONDS_PER_RUN" "$(nproc)"
printf '%-28s %10s %14s %14s %10s\n' case Gbit/s Gbit/s/core "ns CPU/KiB" drained%
for mode in tso mtu; do
  name=$([[ $mode == tso ]] && echo "kite tap, 64 KiB TSO" || echo "kite tap, 1514-byte frames")
  printf '%-28s %10s %14s %14s %10s\n' "$name" "${kite_gbit[$mode]}" "${kite_core[$mode]}" \
    "${kite_ns[$mode]}" "${kite_drained[$mode]}"
done
printf '%-28s %10s %14s %14s %10s\n' "iperf3 TCP over loopback" "$peer_gbit" "$peer_core" - -
awk -v k="${kite_core[tso]}" -v p="$peer_core" \
  'BEGIN { printf "ratio kite tso64k / iperf3, per core: %.2fx (target: >= 20 Gbit/s per core)\n", k / p }'
