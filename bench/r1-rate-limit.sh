#!/usr/bin/env bash
# R1 (BAD_INPUTS.md): a guest saturating a rate-limited disk gets the configured rate within
# 5 %, and the control socket stays responsive meanwhile (B8's query-status round trips).
#
#   bench/r1-rate-limit.sh [BUILD_DIR]   (default: build; needs BUILD_DIR/src/vmm/kite,
#                                         BUILD_DIR/bench/b8_qmp_client, the guest firmware
#                                         and /dev/kvm)
#
# Guest: guest-firmware "busy" with a 64 MiB raw virtio-blk disk, one 4 KiB request at a time
# (writes and reads back), as fast as the disk lets it. Cases, each in a fresh VM:
#   none:  no limit (what the guest does here on its own; the limits must be well below it);
#   bps:   --disk ...,bps=BPS (default 204800: 50 requests/s of 4 KiB);
#   iops:  --disk ...,iops=IOPS (default 40).
# CASES (default "none bps iops") chooses; each run's figures go to stderr.
# Once the guest's I/O runs (and the initial bucket is spent), the rate is read from
# query-blockstats (rd_bytes + wr_bytes, rd_operations + wr_operations) at the start and end of
# SECONDS (default 20), while bench/b8_qmp_client times COUNT (default 2000) sequential
# query-status round trips (p50, p99, max). Medians of RUNS (default 3) runs. Prints the
# measured rate against the configured one and whether it is within 5 %.
set -euo pipefail

BUILD=${1:-build}
KITE=${KITE:-$BUILD/src/vmm/kite}
B8=${B8_BIN:-$BUILD/bench/b8_qmp_client}
GUEST=${GUEST:-$BUILD/guest-firmware/bin/busy.elf}
RUNS=${RUNS:-3}
COUNT=${COUNT:-2000}
SECONDS_PER_RUN=${SECONDS:-20}
BPS=${BPS:-204800}
IOPS=${IOPS:-40}
DIR=${R1_DIR:-${TMPDIR:-/tmp}/kite-r1.$$}
die() { echo "r1: $*" >&2; exit 1; }

[[ -r /dev/kvm && -w /dev/kvm ]] || die "/dev/kvm is missing or not usable here: R1 needs KVM"
[[ -x $KITE ]] || die "no kite binary at $KITE (build it first)"
[[ -x $B8 ]] || die "b8_qmp_client not found at $B8 (build it first)"
[[ -f $GUEST ]] || die "no guest at $GUEST (build the kite_guest_firmware target)"
command -v jq >/dev/null || die "jq not found"
mkdir -p "$DIR"
trap 'rm -rf "$DIR"' EXIT
disk=$DIR/disk.raw
truncate -s 64M "$disk"

# stats SOCK: "<bytes> <operations>" of the disk so far.
stats() {
  "$KITE" ctl --json "$1" query-blockstats |
    jq -r '.return[0].stats | "\(.rd_bytes + .wr_bytes) \(.rd_operations + .wr_operations)"'
}

# run_once LIMIT: one VM with --disk ...LIMIT (empty: none); prints
# "bytes_per_s=.. ops_per_s=.. <b8 client line>".
run_once() {
  local limit=$1 sock=$DIR/api.sock pid b0 o0 t0 b1 o1 t1 line
  rm -f "$sock"
  "$KITE" run --kernel "$GUEST" --memory 128M --serial none \
    --disk "path=$disk,format=raw${limit:+,$limit}" --api-sock "$sock" \
    </dev/null >/dev/null 2>"$DIR/err" &
  pid=$!
  for ((i = 0; i < 600; i++)); do
    [[ -S $sock ]] && read -r b0 o0 < <(stats "$sock" 2>/dev/null) && ((o0 > 100)) && break
    kill -0 "$pid" 2>/dev/null || die "kite ended early: $(tail -c 500 "$DIR/err")"
    sleep 0.1
  done
  ((o0 > 100)) || { kill -KILL "$pid"; die "the guest did no I/O in 60 s"; }
  # Each reading is timed at the middle of the `kite ctl` call that took it (a loaded host
  # may take long to start the process).
  t0=$(date +%s%N)
  read -r b0 o0 < <(stats "$sock")
  t0=$(((t0 + $(date +%s%N)) / 2))
  line=$("$B8" "$sock" --count "$COUNT" --clients 1 --seconds 1) ||
    { kill -KILL "$pid"; die "b8 client failed"; }
  sleep "$(awk -v t0="$t0" -v now="$(date +%s%N)" -v s="$SECONDS_PER_RUN" \
    'BEGIN { r = s - (now - t0) / 1e9; print (r > 0) ? r : 0 }')"
  t1=$(date +%s%N)
  read -r b1 o1 < <(stats "$sock")
  t1=$(((t1 + $(date +%s%N)) / 2))
  kill -KILL "$pid"
  wait "$pid" 2>/dev/null || true
  awk -v b="$((b1 - b0))" -v o="$((o1 - o0))" -v ns="$((t1 - t0))" -v l="$line" \
    'BEGIN { printf "bytes_per_s=%.1f ops_per_s=%.2f %s\n", b * 1e9 / ns, o * 1e9 / ns, l }'
}

median() {
  sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
field() { sed -n "s/.*\b$1=\([0-9.]*\).*/\1/p" | median; }

declare -A out
for case_ in ${CASES:-none bps iops}; do
  case $case_ in
    none) limit= ;;
    bps) limit=bps=$BPS ;;
    iops) limit=iops=$IOPS ;;
  esac
  lines=()
  for ((r = 0; r < RUNS; r++)); do
    lines+=("$(run_once "$limit")")
    echo "r1: $case_ run $r: ${lines[-1]}" >&2
  done
  for f in bytes_per_s ops_per_s p50_us p99_us max_us; do
    out[$case_.$f]=$(printf '%s\n' "${lines[@]}" | field "$f")
  done
done

printf 'R1 rate limits: busy guest, 4 KiB requests, %d s windows, medians of %d runs\n' \
  "$SECONDS_PER_RUN" "$RUNS"
printf '%-10s %14s %14s %10s %8s   %s\n' case measured configured error within query-status\ p50/p99/max\ us
row() {  # case measured configured unit
  local c=$1
  awk -v c="$c" -v m="$2" -v want="$3" -v u="$4" -v p50="${out[$c.p50_us]}" \
    -v p99="${out[$c.p99_us]}" -v mx="${out[$c.max_us]}" 'BEGIN {
    if (want == "") { printf "%-10s %12.1f%s %14s %10s %8s   %.0f/%.0f/%.0f\n", c, m, u, "-", "-", "-", p50, p99, mx; exit }
    e = (m - want) / want * 100
    printf "%-10s %12.1f%s %12.1f%s %+9.2f%% %8s   %.0f/%.0f/%.0f\n", c, m, u, want, u, e,
      (e <= 5 && e >= -5) ? "yes" : "NO", p50, p99, mx }'
}
for case_ in ${CASES:-none bps iops}; do
  case $case_ in
    none) row none "${out[none.ops_per_s]}" "" " op/s" ;;
    bps) row bps "${out[bps.bytes_per_s]}" "$BPS" " B/s" ;;
    iops) row iops "${out[iops.ops_per_s]}" "$IOPS" " op/s" ;;
  esac
done
if [[ -n ${out[none.ops_per_s]:-} ]]; then
  awk -v n="${out[none.ops_per_s]}" -v b="$BPS" -v i="$IOPS" 'BEGIN {
    if (n < 2 * b / 4096 || n < 2 * i)
      print "note: the unlimited guest is less than twice as fast as a limit: that limit is not saturated" }'
fi
