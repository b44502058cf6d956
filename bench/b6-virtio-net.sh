#!/usr/bin/env bash
# B6 (shared/BENCHMARKS.md): the virtio-net device path between a fake driver and a tap, in both
# directions, with 64 KiB TSO frames and 1514-byte frames, beside iperf3 over loopback in the
# same run.
#
#   bench/b6-virtio-net.sh [BUILD_DIR]     (default: build; needs BUILD_DIR/bench/b6_virtio_net,
#                                           root for the tap, and iperf3)
#
# kite: bench/b6_virtio_net (see its header).
#   TX: fake driver → VirtioNet → tap; the frames enter the host kernel on the tap interface and
#       are dropped at IP (their MAC is not the tap's); a packet-socket reader confirms they
#       arrived (drained %).
#   RX: an injector thread sends frames on the tap interface through an AF_PACKET socket with
#       PACKET_VNET_HDR (64 KiB TSO frames stay one GSO frame); VirtioNet reads them from the
#       tap into the fake driver's mergeable 4 KiB (TSO) or 1.5 KiB (1514-byte) buffers.
#       "copied %" = frames of which a part was copied through the device's host buffer because
#       the posted buffers ran short (the rest went straight from the tap into guest memory).
#   "per core" uses kite's thread's CPU time (device path, the tap read/write syscalls and the
#   kernel's copy in them, the event loop, the fake driver's refill/reap); the other thread
#   (TX drain reader, RX injector) is not included.
# peer: iperf3 TCP over 127.0.0.1 (one stream, SECONDS s): the host's own network stack limit
# for one flow; "per core" = bits/s / (iperf3 client CPU% / 100), from iperf3's JSON.
# These are not the same work: iperf3 runs a full TCP stack at both ends; kite moves
# pre-built frames through the device between the guest's rings and the kernel. The ratio says
# how much headroom the device path leaves below what one host TCP flow achieves. Medians of
# RUNS runs (default 3). Target: >= 20 Gbit/s per core with offloads (TSO), each direction.
# Then the same TSO cases with queues=1, 2 and 4 (a multiqueue tap; b6_virtio_net --queues).
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

declare -A kite_gbit kite_core kite_ns kite_extra
for dir in tx rx; do
  for mode in tso mtu; do
    out=()
    for ((i = 0; i < RUNS; i++)); do
      out+=("$("$B6" --dir "$dir" "$mode" "$SECONDS_PER_RUN")")
    done
    key=$dir-$mode
    kite_gbit[$key]=$(printf '%s\n' "${out[@]}" | field gbit_s | median)
    kite_core[$key]=$(printf '%s\n' "${out[@]}" | field cpu_gbit_s | median)
    kite_ns[$key]=$(printf '%s\n' "${out[@]}" | field ns_cpu_per_kib | median)
    extra=$([[ $dir == tx ]] && echo drained_pct || echo copied_pct)
    kite_extra[$key]=$(printf '%s\n' "${out[@]}" | field "$extra" | median)
  done
done
# Per queue count (queues=N: a multiqueue tap, N pairs in use), 64 KiB TSO frames.
declare -A mq_gbit mq_core
for q in 1 2 4; do
  for dir in tx rx; do
    out=()
    for ((i = 0; i < RUNS; i++)); do
      out+=("$("$B6" --dir "$dir" --queues "$q" tso "$SECONDS_PER_RUN")")
    done
    mq_gbit[$dir-$q]=$(printf '%s\n' "${out[@]}" | field gbit_s | median)
    mq_core[$dir-$q]=$(printf '%s\n' "${out[@]}" | field cpu_gbit_s | median)
  done
done
peer=()
for ((i = 0; i < RUNS; i++)); do peer+=("$(iperf_run)"); done
peer_gbit=$(printf '%s\n' "${peer[@]}" | awk '{ print $1 }' | median)
peer_core=$(printf '%s\n' "${peer[@]}" | awk '{ print $2 }' | median)

printf '\nB6 virtio-net device path (medians of %d runs of %ss, %s cores)\n' "$RUNS" \
  "$SECONDS_PER_RUN" "$(nproc)"
printf '%-34s %10s %14s %14s %16s\n' case Gbit/s Gbit/s/core "ns CPU/KiB" "drained/copied%"
for dir in tx rx; do
  for mode in tso mtu; do
    key=$dir-$mode
    what=$([[ $mode == tso ]] && echo "64 KiB TSO" || echo "1514-byte frames")
    name="kite ${dir^^} tap, $what"
    printf '%-34s %10s %14s %14s %16s\n' "$name" "${kite_gbit[$key]}" "${kite_core[$key]}" \
      "${kite_ns[$key]}" "${kite_extra[$key]}"
  done
done
printf '%-34s %10s %14s %14s %16s\n' "iperf3 TCP over loopback" "$peer_gbit" "$peer_core" - -
for dir in tx rx; do
  awk -v d="${dir^^}" -v k="${kite_core[$dir-tso]}" -v p="$peer_core" 'BEGIN {
    printf "ratio kite %s tso64k / iperf3, per core: %.2fx (target: >= 20 Gbit/s per core: %s)\n",
      d, k / p, (k >= 20 ? "met" : "NOT met") }'
done
printf '\nPer queue count (64 KiB TSO, every pair on kite'"'"'s one event-loop thread)\n'
printf '%-10s %12s %16s %12s %16s\n' queues "TX Gbit/s" "TX Gbit/s/core" "RX Gbit/s" "RX Gbit/s/core"
for q in 1 2 4; do
  printf '%-10s %12s %16s %12s %16s\n' "$q" "${mq_gbit[tx-$q]}" "${mq_core[tx-$q]}" \
    "${mq_gbit[rx-$q]}" "${mq_core[rx-$q]}"
done
