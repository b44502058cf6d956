#!/usr/bin/env bash
# B5 (shared/BENCHMARKS.md): host CPU per request on the virtio-blk device path.
#
#   bench/b5-virtio-blk.sh [BUILD_DIR]      (default: build; needs BUILD_DIR/bench/b5_virtio_blk)
#
# kite: bench/b5_virtio_blk pushes 4 KiB random reads and writes at queue depth 32 through a
# fake driver, a split virtqueue, the virtio-blk device and AsyncDisk onto two in-memory disks
# (a raw file held in the page cache, through io_uring, as the VMM runs a raw disk; and a
# DiskImage in memory through the worker pool, as the VMM runs a qcow2 disk);
# it reports requests per wall-second and per CPU-second of the whole process (getrusage), the
# latter being "requests/s per host core".
# peer: fio (io_uring, 4 KiB random, depth 32) on the same raw file, as B4's raw case; its
# per-core figure is IOPS / ((usr_cpu + sys_cpu) / 100), from fio's own accounting.
# (--invalidate=0: fio would otherwise drop the file from the page cache first.)
# The file lives beside the build directory (a disk file system such as ext4), written and
# synced before the runs so every page is cached and clean. Not tmpfs (/dev/shm): tmpfs takes
# no non-blocking I/O, so io_uring hands every request to a kernel worker thread there, and
# the figure is that hand-off, not the device path (B5_DIR chooses another directory).
# Each case runs RUNS times (default 5); medians are shown. Target: >= 500k requests/s per core.
# PIN=CPULIST runs both sides under `taskset -c CPULIST` (the figure with pinning: run it once
# without PIN and once with, e.g. PIN=1, as kite's --emulator-pin would place its I/O threads).
set -euo pipefail

BUILD=${1:-build}
B5=${B5_BIN:-$BUILD/bench/b5_virtio_blk}
RUNS=${RUNS:-5}
COUNT=${COUNT:-200000}
DEPTH=32
SIZE_MB=256
DIR=${B5_DIR:-$BUILD/b5-data.$$}
pin=()
[[ -z ${PIN:-} ]] || pin=(taskset -c "$PIN")

[[ -x $B5 ]] || { echo "b5_virtio_blk not found at $B5 (build it first)" >&2; exit 1; }
command -v fio >/dev/null || { echo "fio missing" >&2; exit 1; }
mkdir -p "$DIR"
trap 'rm -rf "$DIR"' EXIT

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
field() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p"; }


# fio_run RW -> "iops iops_per_core" of one run
fio_run() {
  local img="$DIR/raw.img"
  [[ -f $img ]] || dd if=/dev/zero of="$img" bs=1M count=$SIZE_MB status=none
  "${pin[@]}" fio --name=b5 --filename="$img" --ioengine=io_uring --rw="$1" --bs=4k --iodepth=$DEPTH --invalidate=0 \
      --size=${SIZE_MB}M --number_ios="$COUNT" --output-format=json 2>/dev/null |
    python3 -c 'import json,sys
j = json.load(sys.stdin)["jobs"][0]
iops = j["read"]["iops"] + j["write"]["iops"]
cpu = (j["usr_cpu"] + j["sys_cpu"]) / 100.0
print(int(iops), int(iops / cpu) if cpu > 0 else 0)'
}

printf '%-34s %12s %12s %8s  %s\n' case kite fio ratio \
  "(median of $RUNS; requests/s${PIN:+; both pinned to CPU $PIN})"
row() { awk -v n="$1" -v k="$2" -v p="$3" 'BEGIN { printf "%-34s %12d %12d %7.2fx\n", n, k, p, k / p }'; }
img="$DIR/raw.img"
dd if=/dev/zero of="$img" bs=1M count=$SIZE_MB status=none
sync "$img"
# Two kite disks: "mem" (an in-memory DiskImage through AsyncDisk's worker pool) and "raw" (the
# same raw file fio uses, opened as the VMM opens a raw disk: reads/writes through io_uring).
for mode in read write; do
  rw=rand$mode
  mem_rps=() mem_core=() raw_rps=() raw_core=() fio_rps=() fio_core=()
  for ((i = 0; i < RUNS; i++)); do
    line=$("${pin[@]}" "$B5" --mode $mode --count "$COUNT" --depth $DEPTH --size-mb $SIZE_MB --disk mem)
    mem_rps+=("$(field rps <<<"$line")")
    mem_core+=("$(field rps_per_core <<<"$line")")
    line=$("${pin[@]}" "$B5" --mode $mode --count "$COUNT" --depth $DEPTH --size-mb $SIZE_MB --disk "$img")
    raw_rps+=("$(field rps <<<"$line")")
    raw_core+=("$(field rps_per_core <<<"$line")")
    read -r a b < <(fio_run $rw)
    fio_rps+=("$a")
    fio_core+=("$b")
  done
  med() { printf '%s\n' "$@" | median; }
  f1=$(med "${fio_rps[@]}") f2=$(med "${fio_core[@]}")
  row "4k $rw raw/io_uring wall" "$(med "${raw_rps[@]}")" "$f1"
  row "4k $rw raw/io_uring per core" "$(med "${raw_core[@]}")" "$f2"
  row "4k $rw mem/pool wall" "$(med "${mem_rps[@]}")" "$f1"
  row "4k $rw mem/pool per core" "$(med "${mem_core[@]}")" "$f2"
done
