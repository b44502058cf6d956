#!/usr/bin/env bash
# B4 (shared/BENCHMARKS.md): kite's storage engine against qemu-img bench and fio, in the same
# run, on files in the page cache (/dev/shm).
#
#   bench/b4-storage.sh [BUILD_DIR]      (default: build; needs BUILD_DIR/src/storage/img/kite-img)
#
# Cases: 4 KiB "random" read and write at queue depth 32, 1 MiB sequential read and write at
# depth 4, on raw, fresh qcow2 (created empty before every run, so writes allocate) and fully
# allocated qcow2. qemu-img bench has no random mode: both tools walk the disk with a stride of
# 1009 * 4 KiB (a prime number of blocks) wrapping modulo the disk size, which touches the
# blocks in a scattered order; fio uses true random offsets (rw=randread/randwrite) on the raw
# file with io_uring. On raw images kite runs twice: with its default (io_uring for raw) and with
# `-i threads` (the worker pool), both against fio. Each case runs RUNS times (default 5); the
# table shows medians of requests per second and kite/peer (higher is better for kite).
set -euo pipefail

BUILD=${1:-build}
KITE_IMG=${KITE_IMG:-$BUILD/src/storage/img/kite-img}
RUNS=${RUNS:-5}
DIR=${B4_DIR:-/dev/shm/kite-b4.$$}
SIZE_MB=256
COUNT_4K=${COUNT_4K:-20000}
COUNT_1M=${COUNT_1M:-256}
STRIDE=$((1009 * 4096))

[[ -x $KITE_IMG ]] || { echo "kite-img not found at $KITE_IMG (build it first)" >&2; exit 1; }
command -v qemu-img >/dev/null || { echo "qemu-img missing" >&2; exit 1; }
command -v fio >/dev/null || { echo "fio missing" >&2; exit 1; }
mkdir -p "$DIR"
trap 'rm -rf "$DIR"' EXIT

# make_image KIND PATH: raw (written once, so every block is in the page cache), fresh qcow2,
# or fully allocated qcow2 (preallocation=full).
make_image() {
  case $1 in
    raw) [[ -f $2 ]] || dd if=/dev/zero of="$2" bs=1M count=$SIZE_MB status=none ;;
    qcow2-fresh) qemu-img create -q -f qcow2 "$2" ${SIZE_MB}M ;;
    qcow2-full) [[ -f $2 ]] || qemu-img create -q -f qcow2 -o preallocation=full "$2" ${SIZE_MB}M ;;
  esac
}

# bench_args PATTERN: the qemu-img bench options shared by both tools.
bench_args() {
  case $1 in
    randread) echo "-c $COUNT_4K -d 32 -s 4096 -S $STRIDE" ;;
    randwrite) echo "-w -c $COUNT_4K -d 32 -s 4096 -S $STRIDE" ;;
    seqread) echo "-c $COUNT_1M -d 4 -s 1M" ;;
    seqwrite) echo "-w -c $COUNT_1M -d 4 -s 1M" ;;
  esac
}

count_of() { case $1 in rand*) echo "$COUNT_4K" ;; *) echo "$COUNT_1M" ;; esac; }
fmt_of() { case $1 in raw) echo raw ;; *) echo qcow2 ;; esac; }

# run_bench TOOL KIND PATTERN [EXTRA...] -> requests per second of one run
run_bench() {
  local tool=$1 kind=$2 pattern=$3 img="$DIR/$2.img" out secs
  shift 3
  [[ $kind == qcow2-fresh ]] && rm -f "$img"
  make_image "$kind" "$img"
  # shellcheck disable=SC2046
  out=$("$tool" bench -f "$(fmt_of "$kind")" -t writeback "$@" $(bench_args "$pattern") "$img")
  secs=$(sed -n 's/^Run completed in \([0-9.]*\) seconds\./\1/p' <<<"$out")
  awk -v c="$(count_of "$pattern")" -v s="$secs" 'BEGIN { printf "%.0f\n", c / s }'
}

# run_fio PATTERN -> requests per second on the raw file
run_fio() {
  local pattern=$1 img="$DIR/raw.img" rw bs depth
  make_image raw "$img"
  case $pattern in
    randread) rw=randread bs=4k depth=32 ;;
    randwrite) rw=randwrite bs=4k depth=32 ;;
    seqread) rw=read bs=1M depth=4 ;;
    seqwrite) rw=write bs=1M depth=4 ;;
  esac
  fio --name=b4 --filename="$img" --ioengine=io_uring --rw=$rw --bs=$bs --iodepth=$depth \
      --size=${SIZE_MB}M --number_ios="$(count_of "$pattern")" --output-format=json 2>/dev/null |
    python3 -c 'import json,sys; j=json.load(sys.stdin)["jobs"][0]; print(int(j["read"]["iops"] + j["write"]["iops"]))'
}

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

measure() {  # measure CMD... -> median of RUNS runs
  local i
  for ((i = 0; i < RUNS; i++)); do "$@"; done | median
}

printf '%-28s %12s %12s %8s  %s\n' case kite "peer" ratio "(requests/s, median of $RUNS)"
row() {
  awk -v n="$1" -v k="$2" -v p="$3" -v peer="$4" \
    'BEGIN { printf "%-28s %12d %12d %7.2fx  vs %s\n", n, k, p, k / p, peer }'
}
start=$(date +%s)
for kind in raw qcow2-fresh qcow2-full; do
  for pattern in randread randwrite seqread seqwrite; do
    kite=$(measure run_bench "$KITE_IMG" "$kind" "$pattern")
    qemu=$(measure run_bench qemu-img "$kind" "$pattern")
    row "$kind $pattern" "$kite" "$qemu" "qemu-img bench"
    if [[ $kind == raw ]]; then
      fio_rate=$(measure run_fio "$pattern")
      row "$kind $pattern" "$kite" "$fio_rate" "fio io_uring"
      threads=$(measure run_bench "$KITE_IMG" "$kind" "$pattern" -i threads)
      row "$kind $pattern -i threads" "$threads" "$fio_rate" "fio io_uring"
    fi
  done
done
echo "total time: $(( $(date +%s) - start )) s"
