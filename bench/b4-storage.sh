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
#
# Second section, the daily image commands: a 1 GiB raw image holding ~500 MB of data in
# scattered extents (random bytes, compressible text, some written zeros) between holes, made
# once per run; `convert` raw->qcow2, qcow2->raw and -c, `commit`, safe `rebase` and `compare`
# timed for kite-img and qemu-img alternately (each run on fresh copies of the images), medians
# of RUNS runs (RUNS_C for convert -c, default 3) in seconds; speed = qemu-img time / kite-img
# time (higher is better for kite). The images are in the page cache (B4_IMG_DIR, default in
# /dev/shm; a directory on disk, B4_IMG_DIR=/var/tmp/..., adds write-back and flush costs and
# much noise); the inputs are read once before timing. B4_SECTIONS=bench or =image runs one
# section only.
set -euo pipefail

BUILD=${1:-build}
KITE_IMG=${KITE_IMG:-$BUILD/src/storage/img/kite-img}
RUNS=${RUNS:-5}
DIR=${B4_DIR:-/dev/shm/kite-b4.$$}
SIZE_MB=256
COUNT_4K=${COUNT_4K:-20000}
COUNT_1M=${COUNT_1M:-256}
STRIDE=$((1009 * 4096))
SECTIONS=${B4_SECTIONS:-bench image}
IMG_DIR=${B4_IMG_DIR:-/dev/shm/kite-b4-img.$$}
RUNS_C=${RUNS_C:-3}

[[ -x $KITE_IMG ]] || { echo "kite-img not found at $KITE_IMG (build it first)" >&2; exit 1; }
command -v qemu-img >/dev/null || { echo "qemu-img missing" >&2; exit 1; }
if [[ " $SECTIONS " == *" bench "* ]]; then
  command -v fio >/dev/null || { echo "fio missing" >&2; exit 1; }
fi
if [[ " $SECTIONS " == *" image "* ]]; then
  command -v qemu-io >/dev/null || { echo "qemu-io missing" >&2; exit 1; }
fi
mkdir -p "$DIR"
trap 'rm -rf "$DIR" "$IMG_DIR"' EXIT

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

bench_section() {
  printf '%-28s %12s %12s %8s  %s\n' case kite "peer" ratio "(requests/s, median of $RUNS)"
  local kind pattern kite qemu fio_rate threads
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
}

# make_data_image PATH: 1 GiB sparse raw, ~500 MB of data in extents of 64 KiB..6 MiB with holes
# of 0..6 MiB between them: 5 % written zeros, half random bytes, the rest compressible text.
make_data_image() {
  python3 - "$1" <<'PY'
import os, random, sys
rnd, size, target = random.Random(42), 1 << 30, 500 * 10**6
with open(sys.argv[1], "wb") as f:
    f.truncate(size)
    off = data = 0
    while data < target and off < size:
        off += rnd.randrange(0, 6 << 20) & ~4095
        n = min(rnd.randrange(64 << 10, 6 << 20) & ~4095, size - off)
        if n <= 0:
            break
        kind = rnd.random()
        if kind < 0.05:
            buf = bytes(n)
        elif kind < 0.55:
            buf = os.urandom(n)
        else:
            words = [os.urandom(rnd.randrange(3, 9)).hex().encode() for _ in range(200)]
            buf = bytearray()
            while len(buf) < n:
                buf += rnd.choice(words) + b" "
            buf = bytes(buf[:n])
        f.seek(off)
        f.write(buf)
        off += n
        data += n
PY
}

# The images of the second section: src.raw, src.qcow2 (qemu-img's conversion), top.qcow2 (an
# overlay of src.qcow2 with 134 MiB of its own data and zeros), base2.qcow2 (src.qcow2 with
# 90 MiB changed: the new backing for rebase).
make_image_set() {
  local d=$1
  make_data_image "$d/src.raw"
  qemu-img convert -f raw -O qcow2 "$d/src.raw" "$d/src.qcow2"
  cp "$d/src.qcow2" "$d/base2.qcow2"
  qemu-io -f qcow2 -c "write -P 0x5a 100M 40M" -c "write -P 0x33 600M 20M" \
    -c "write -z 300M 30M" "$d/base2.qcow2" >/dev/null
  qemu-img create -q -f qcow2 -b src.qcow2 -F qcow2 "$d/top.qcow2"
  qemu-io -f qcow2 -c "write -P 0x11 50M 60M" -c "write -P 0x22 500M 50M" \
    -c "write -z 900M 20M" -c "write -P 0x44 1000M 4M" "$d/top.qcow2" >/dev/null
}

# prepare CASE: fresh inputs and no output left from the previous run.
prepare() {
  local d=$IMG_DIR
  rm -f "$d"/out.*
  case $1 in
    commit)
      cp "$d/src.qcow2" "$d/cbase.qcow2"
      cp "$d/top.qcow2" "$d/ctop.qcow2"
      qemu-img rebase -u -f qcow2 -b cbase.qcow2 -F qcow2 "$d/ctop.qcow2" ;;
    rebase) cp "$d/top.qcow2" "$d/rtop.qcow2" ;;
  esac
}

# command_of CASE -> the subcommand and its arguments, the same for both tools
command_of() {
  local d=$IMG_DIR
  case $1 in
    raw2qcow2) echo "convert -f raw -O qcow2 $d/src.raw $d/out.qcow2" ;;
    qcow22raw) echo "convert -f qcow2 -O raw $d/src.qcow2 $d/out.raw" ;;
    compress) echo "convert -c -f raw -O qcow2 $d/src.raw $d/out.qcow2" ;;
    commit) echo "commit -q -f qcow2 $d/ctop.qcow2" ;;
    rebase) echo "rebase -q -f qcow2 -b base2.qcow2 -F qcow2 $d/rtop.qcow2" ;;
    compare) echo "compare -q -f raw -F qcow2 $d/src.raw $d/src.qcow2" ;;
  esac
}

# time_command TOOL CASE -> seconds of one run (inputs prepared first, not timed)
time_command() {
  local start end
  prepare "$2"
  start=$(date +%s.%N)
  # shellcheck disable=SC2046
  "$1" $(command_of "$2") >/dev/null
  end=$(date +%s.%N)
  awk -v s="$start" -v e="$end" 'BEGIN { printf "%.3f\n", e - s }'
}

image_section() {
  local c runs i kite qemu
  mkdir -p "$DIR" "$IMG_DIR"
  make_image_set "$IMG_DIR"
  cat "$IMG_DIR"/*.raw "$IMG_DIR"/*.qcow2 >/dev/null  # page cache warm
  echo
  printf '%-28s %10s %10s %8s  %s\n' case kite qemu-img speed "(seconds, median; qemu-img / kite)"
  for c in raw2qcow2 qcow22raw compress commit rebase compare; do
    runs=$RUNS
    [[ $c == compress ]] && runs=$RUNS_C
    : >"$DIR/kite.times"
    : >"$DIR/qemu.times"
    for ((i = 0; i < runs; i++)); do  # alternate, so both see the same machine load
      time_command "$KITE_IMG" "$c" >>"$DIR/kite.times"
      time_command qemu-img "$c" >>"$DIR/qemu.times"
    done
    kite=$(median <"$DIR/kite.times")
    qemu=$(median <"$DIR/qemu.times")
    awk -v n="$c" -v k="$kite" -v q="$qemu" -v r="$runs" \
      'BEGIN { printf "%-28s %10.3f %10.3f %7.2fx  (%d runs)\n", n, k, q, q / k, r }'
  done
}

row() {
  awk -v n="$1" -v k="$2" -v p="$3" -v peer="$4" \
    'BEGIN { printf "%-28s %12d %12d %7.2fx  vs %s\n", n, k, p, k / p, peer }'
}
start=$(date +%s)
[[ " $SECTIONS " == *" bench "* ]] && bench_section
[[ " $SECTIONS " == *" image "* ]] && image_section
echo "total time: $(( $(date +%s) - start )) s"
