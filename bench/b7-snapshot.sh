#!/usr/bin/env bash
# B7 (shared/BENCHMARKS.md): snapshot save and restore of a 1-vCPU guest of 128 MiB and of
# 2 GiB, kite against QEMU (-M microvm -accel kvm, same PVH ELF) in the same run.
#
#   bench/b7-snapshot.sh [BUILD_DIR]     (default: build; needs BUILD_DIR/src/vmm/kite,
#                                         BUILD_DIR/bench/b7_snapshot, the guest firmware,
#                                         qemu-system-x86_64 and /dev/kvm)
#
# Save (guest-firmware "counter": prints a line every 20 ms, otherwise idle): the VMM runs
# with a QMP socket; once the guest has printed, bench/b7_snapshot sends `stop` (not timed)
# and then times one command from just before it is written to the socket:
#   kite: `x-vm-snapshot-save {"path": DIR}` until its reply. kite replies once the state,
#         memory and config files and the directory are fsynced.
#   qemu: `migrate {"uri": "exec:cat > FILE"}` until the MIGRATION event "completed" (QEMU
#         has written the last byte into cat's pipe; nothing is fsynced).
#   "on disk" is `du` of the snapshot directory (kite: zero pages are holes) or of FILE
#   (QEMU sends zero pages as a flag, so its stream is small).
# Restore (guest-firmware "busy": prints "busy: <n>" lines in a tight loop, one serial exit per
# byte): one snapshot per VMM and size is taken as above, then each run times, with
# `b7_snapshot first-output`, from just before fork() to the first byte of guest output on the
# VMM's stdout (a pipe):
#   kite: `kite restore DIR --serial stdio` (process start, state load, lazy MAP_PRIVATE
#         memory, KVM set-up, vCPU run).
#   qemu: `qemu ... -serial stdio -incoming "exec:cat FILE"` (no -S). The source ran with
#         `-global migration.store-global-state=off`, so the stream carries no "paused" run
#         state and QEMU starts the guest by itself as soon as the stream is loaded: no QMP
#         `cont` round trip is added to QEMU's figure.
#   Both figures include one serial exit and the VMM's write(2) of the byte to the pipe:
#   "bias" is the mean time per byte that follows (a serial exit round trip), shown beside
#   them; the vCPU ran again up to about that much earlier.
# "process start" is the same timing of `kite --version` / `qemu --version` (to the first byte
# of its output): the share of a restore that is only exec and the dynamic loader.
# Snapshots live in B7_DIR (default ${TMPDIR:-/tmp}/kite-b7.PID; in the nested KVM VM that is
# tmpfs). Each figure is the median of RUNS runs (default 5), kite and QEMU alternating.
# Targets: restore <= 2 ms (128 MiB) and <= +1 ms at 2 GiB; save <= 100 ms (idle 128 MiB).
set -euo pipefail

BUILD=${1:-build}
KITE=${KITE:-$BUILD/src/vmm/kite}
B7=${B7_BIN:-$BUILD/bench/b7_snapshot}
GUESTS=${GUESTS:-$BUILD/guest-firmware/bin}
QEMU=${QEMU:-qemu-system-x86_64}
RUNS=${RUNS:-5}
SIZES=${SIZES:-"128 2048"}
DIR=${B7_DIR:-${TMPDIR:-/tmp}/kite-b7.$$}
die() { echo "b7: $*" >&2; exit 1; }

((RUNS >= 5)) || die "at least 5 runs (BENCHMARKS.md)"
[[ -r /dev/kvm && -w /dev/kvm ]] || die "/dev/kvm is missing or not usable here: B7 needs KVM"
[[ -x $KITE ]] || die "no kite binary at $KITE (build it first)"
[[ -x $B7 ]] || die "b7_snapshot not found at $B7 (build it first)"
[[ -f $GUESTS/counter.elf && -f $GUESTS/busy.elf ]] || die "no guests in $GUESTS (kite_guest_firmware)"
command -v "$QEMU" >/dev/null || die "$QEMU not found"
mkdir -p "$DIR"
trap 'rm -rf "$DIR"' EXIT

# qemu_cmd MIB GUEST: the QEMU machine, without its serial port and control options.
qemu_cmd() {
  echo "$QEMU" -M microvm,x-option-roms=off,rtc=off -accel kvm -m "$1M" -nodefaults \
    -no-user-config -display none -kernel "$GUESTS/$2.elf"
}

# wait_for FILE TEXT PID: until FILE contains TEXT (60 s), while PID lives; else kills PID.
wait_for() {
  for ((i = 0; i < 600; i++)); do
    grep -qF "$2" "$1" 2>/dev/null && return 0
    kill -0 "$3" 2>/dev/null || die "the VMM ended before printing '$2': $(tail -c 500 "$1.err")"
    sleep 0.1
  done
  kill -KILL "$3"
  die "no '$2' in $1 after 60 s"
}

# save VMM MIB GUEST TARGET: boots GUEST, waits for its output, saves to TARGET (a directory
# for kite, a file for QEMU). Prints "microseconds KiB-on-disk".
save() {
  local vmm=$1 mib=$2 guest=$3 target=$4 sock=$DIR/$1.sock serial=$DIR/$1.serial pid us
  rm -rf "$target" "$sock" "$serial"
  if [[ $vmm == kite ]]; then
    "$KITE" run --kernel "$GUESTS/$guest.elf" --memory "${mib}M" --serial "file:$serial" \
      --api-sock "$sock" </dev/null >/dev/null 2>"$serial.err" &
  else
    # shellcheck disable=SC2046
    $(qemu_cmd "$mib" "$guest") -serial "file:$serial" -qmp "unix:$sock,server=on,wait=off" \
      -global migration.store-global-state=off </dev/null >/dev/null 2>"$serial.err" &
  fi
  pid=$!
  wait_for "$serial" "$guest: " "$pid"
  us=$("$B7" "save-$vmm" "$sock" "$target") || { kill -KILL "$pid"; die "$vmm save failed"; }
  us=${us#us=}
  wait "$pid" 2>/dev/null || true
  sync
  echo "$us $(du -sk "$target" | cut -f1)"
}

# restore VMM MIB SNAPSHOT: one timed restore; prints "first_us per_byte_us".
restore() {
  local out
  if [[ $1 == kite ]]; then
    out=$("$B7" first-output --log "$DIR/restore.err" -- "$KITE" restore "$3" --serial stdio)
  else
    # shellcheck disable=SC2046
    out=$("$B7" first-output --log "$DIR/restore.err" -- $(qemu_cmd "$2" busy) -serial stdio \
      -incoming "exec:cat $3")
  fi
  sed -n 's/^first_us=\([0-9.]*\) per_byte_us=\([0-9.]*\)$/\1 \2/p' <<<"$out"
}

# start_us VMM: one timed `--version`, microseconds to its first output byte.
start_us() {
  local bin=$KITE expect=kite
  [[ $1 == kite ]] || bin=$QEMU expect=QEMU
  "$B7" first-output --bytes 0 --expect "$expect" -- "$bin" --version | sed -n 's/^first_us=\([0-9]*\).*/\1/p'
}

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
col() { awk -v c="$1" '{ print $c }' | median; }

printf 'B7 snapshot save and restore (medians of %d runs; 1-vCPU guests; %s CPU(s) online)\n' "$RUNS" "$(nproc)"
printf '%-34s %13s %13s %8s\n' case kite qemu qemu/kite
# row NAME KITE QEMU UNIT DIVISOR
row() { awk -v n="$1" -v k="$2" -v q="$3" -v u="$4" -v d="$5" \
  'BEGIN { printf "%-34s %9.2f %-3s %9.2f %-3s %7.1fx\n", n, k / d, u, q / d, u, q / k }'; }
for mib in $SIZES; do
  label=$( ((mib >= 1024)) && echo "$((mib / 1024)) GiB" || echo "$mib MiB")
  kite_save=() qemu_save=()
  for ((r = 0; r < RUNS; r++)); do
    kite_save+=("$(save kite "$mib" counter "$DIR/kite-snap")")
    qemu_save+=("$(save qemu "$mib" counter "$DIR/qemu-snap.mig")")
  done
  save kite "$mib" busy "$DIR/kite-busy" >/dev/null
  save qemu "$mib" busy "$DIR/qemu-busy.mig" >/dev/null
  kite_rest=() qemu_rest=()
  for ((r = 0; r < RUNS; r++)); do
    kite_rest+=("$(restore kite "$mib" "$DIR/kite-busy")")
    qemu_rest+=("$(restore qemu "$mib" "$DIR/qemu-busy.mig")")
  done
  ks=$(printf '%s\n' "${kite_save[@]}" | col 1) qs=$(printf '%s\n' "${qemu_save[@]}" | col 1)
  kd=$(printf '%s\n' "${kite_save[@]}" | col 2) qd=$(printf '%s\n' "${qemu_save[@]}" | col 2)
  kr=$(printf '%s\n' "${kite_rest[@]}" | col 1) qr=$(printf '%s\n' "${qemu_rest[@]}" | col 1)
  kb=$(printf '%s\n' "${kite_rest[@]}" | col 2) qb=$(printf '%s\n' "${qemu_rest[@]}" | col 2)
  row "save $label (counter), to reply" "$ks" "$qs" ms 1000
  row "  on disk (du)" "$kd" "$qd" MiB 1024
  row "restore $label (busy), to 1st byte" "$kr" "$qr" ms 1000
  row "  bias: per serial byte after" "$kb" "$qb" ms 1000
  echo "  runs, save us/KiB | restore us/bias us: kite ${kite_save[*]// /\/} | ${kite_rest[*]// /\/}"
  echo "                                          qemu ${qemu_save[*]// /\/} | ${qemu_rest[*]// /\/}"
done
kite_start=() qemu_start=()
for ((r = 0; r < RUNS; r++)); do
  kite_start+=("$(start_us kite)")
  qemu_start+=("$(start_us qemu)")
done
row "process start (--version)" "$(printf '%s\n' "${kite_start[@]}" | median)" \
  "$(printf '%s\n' "${qemu_start[@]}" | median)" ms 1000
echo "targets: restore <= 2 ms at 128 MiB, <= +1 ms at 2 GiB; save <= 100 ms (idle 128 MiB)"
