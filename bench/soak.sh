#!/bin/bash
# Soak (issue 11 §5): VMS Linux guests run for SECONDS, each doing disk and network I/O
# (guest-firmware/linux/tests/soak: 1 MiB direct writes read back and compared on a qcow2
# overlay, a ping of the NAT gateway, five rounds a second at most), while the control socket
# pauses and resumes them, queries them and takes VM snapshots. Every INTERVAL seconds each kite
# process is sampled: open file descriptors, threads, and its own resident memory (RSS outside
# the guest-RAM mapping, from /proc/PID/smaps; the guest's pages are the guest's) and total RSS.
#
#   bench/soak.sh [VMS] [SECONDS]     (default 3 VMs, 600 s; needs a /dev/kvm that runs guest
#                                      userspace: hardware, or the nested VM of scripts/kvm-vm:
#                                      scripts/kvm-vm/run-in-kvm-vm.sh . -- bench/soak.sh 3 600)
# Env: BUILD (build), KITE, KITE_GUEST_KERNEL, INTERVAL (10 s), MEMORY (128, MiB)
#
# Prints per VM: guest rounds (ok/failed), control cycles, and for fds, threads, own RSS and
# total RSS the first, last and largest sample and the least-squares slope per hour over the
# second half of the run (the first half is warm-up: caches, the guest touching its RAM).
# Exit status 1 when a guest round failed, a kite died or wrote to stderr (other than the line
# of the closing quit), the guest's console shows a kernel error, a control command failed,
# `qemu-img check` finds an overlay unclean, the fd or thread count of the second half rose
# above the first half's largest, or own RSS rose more than 2 MiB above the first half's
# largest.
set -euo pipefail

bench_name=soak
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
vms=${1:-3}
seconds=${2:-600}
interval=${INTERVAL:-10}
memory_mib=${MEMORY:-128}
command -v qemu-img >/dev/null || die "qemu-img is missing (Debian package qemu-utils)"
bench_linux_guest
failures=()
fail() { failures+=("$*"); echo "soak: FAIL: $*" >&2; }

# wait_for FILE TEXT SECONDS
wait_for() {
  local until=$((SECONDS + $3))
  while ((SECONDS < until)); do
    grep -qF "$2" "$1" 2>/dev/null && return 0
    sleep 0.2
  done
  tail -n 20 "$1" >&2
  return 1
}

# sample PID T: one line "T fds threads own_kib total_kib" for the process.
sample() {
  local pid=$1 t=$2 fds threads
  fds=$(find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
  threads=$(awk '/^Threads:/ { print $2 }' "/proc/$pid/status")
  awk -v t="$t" -v fds="$fds" -v threads="$threads" -v ram=$((memory_mib << 20)) '
    function hex(s,   i, v) {
      v = 0
      for (i = 1; i <= length(s); i++) v = v * 16 + index("0123456789abcdef", substr(s, i, 1)) - 1
      return v
    }
    /^[0-9a-f]+-[0-9a-f]+ / { split($1, r, "-"); guest = hex(r[2]) - hex(r[1]) >= ram; next }
    /^Rss:/ { total += $2; if (!guest) own += $2 }
    END { print t, fds, threads, own, total }' "/proc/$pid/smaps"
}

# stats FILE COLUMN: "first last max slope_per_hour(second half)" of a sample column.
stats() {
  awk -v c="$2" '
    { t[NR] = $1; v[NR] = $c }
    END {
      h = int(NR / 2) + 1; max = v[1]
      for (i = 1; i <= NR; i++) if (v[i] > max) max = v[i]
      n = 0; st = sv = stt = stv = 0
      for (i = h; i <= NR; i++) { n++; st += t[i]; sv += v[i]; stt += t[i] * t[i]; stv += t[i] * v[i] }
      d = n * stt - st * st
      slope = (n > 1 && d != 0) ? (n * stv - st * sv) / d * 3600 : 0
      printf "%s %s %s %.2f\n", v[1], v[NR], max, slope
    }' "$1"
}

# grew FILE COLUMN SLACK: true when the second half's largest exceeds the first half's by more
# than SLACK.
grew() {
  awk -v c="$2" -v slack="$3" '
    { v[NR] = $c }
    END {
      h = int(NR / 2); a = b = 0
      for (i = 1; i <= h; i++) if (v[i] > a) a = v[i]
      for (i = h + 1; i <= NR; i++) if (v[i] > b) b = v[i]
      exit !(NR >= 4 && b > a + slack)
    }' "$1"
}

ctl() { "$kite" ctl "$work/vm$1.sock" "${@:2}"; }

"$kite_img" create -f raw "$work/base.raw" 64M >/dev/null
cmdline="console=ttyS0 reboot=k panic=1 quiet ip=dhcp kite.test=soak"
for ((i = 0; i < vms; i++)); do
  "$kite_img" create -f qcow2 -b "$work/base.raw" -F raw "$work/vm$i.qcow2" >/dev/null
  "$kite" run --kernel "$kernel" --initrd "$initrd" --memory "${memory_mib}M" --serial stdio \
    --disk "path=$work/vm$i.qcow2,format=qcow2" --net user --api-sock "$work/vm$i.sock" \
    --cmdline "$cmdline" </dev/null >"$work/vm$i.console" 2>"$work/vm$i.err" &
  pids+=($!)
done
for ((i = 0; i < vms; i++)); do
  wait_for "$work/vm$i.console" "kite-soak: round 1 " 300 || die "VM $i never started its rounds"
done

echo "soak: $vms VMs ($(basename "$kernel"), 1 vCPU, $memory_mib MiB, qcow2 overlay, user NIC) for $seconds s, samples every $interval s"
start=$SECONDS
cycles=0 snapshots=0
tick=0
while ((SECONDS - start < seconds)); do
  t=$((SECONDS - start))
  for ((i = 0; i < vms; i++)); do
    kill -0 "${pids[i]}" 2>/dev/null || die "kite of VM $i died (stderr: $(cat "$work/vm$i.err"))"
    sample "${pids[i]}" "$t" >>"$work/vm$i.samples"
    ctl "$i" query-blockstats >/dev/null || fail "VM $i: query-blockstats"
  done
  # One VM per tick: pause, check, resume; every third tick a VM snapshot as well.
  k=$((tick % vms))
  if ctl "$k" stop && ctl "$k" query-status | grep -q '"paused"' && ctl "$k" cont; then
    cycles=$((cycles + 1))
  else
    fail "VM $k: stop/query-status/cont"
  fi
  if ((tick % 3 == 2)); then
    if ctl "$k" snapshot "$work/snap" >/dev/null; then snapshots=$((snapshots + 1)); else fail "VM $k: snapshot"; fi
    rm -rf "$work/snap"
  fi
  tick=$((tick + 1))
  sleep "$interval"
done

printf '%-4s %8s %7s %22s %22s %26s %26s\n' VM rounds failed "fds first/last/max" \
  "threads first/last/max" "own RSS KiB first/last/max" "total RSS KiB first/last/max"
slopes=()
for ((i = 0; i < vms; i++)); do
  s=$work/vm$i.samples
  ok=$(grep -c 'kite-soak: round [0-9]* ok' "$work/vm$i.console" || true)
  bad=$(grep -c 'kite-soak: round [0-9]* failed' "$work/vm$i.console" || true)
  # (here-strings, not process substitution: the nested VM has no /dev/fd)
  read -r f1 f2 f3 fs <<<"$(stats "$s" 2)"
  read -r t1 t2 t3 ts <<<"$(stats "$s" 3)"
  read -r o1 o2 o3 os <<<"$(stats "$s" 4)"
  read -r r1 r2 r3 rs <<<"$(stats "$s" 5)"
  printf '%-4s %8s %7s %22s %22s %26s %26s\n' "$i" "$ok" "$bad" "$f1/$f2/$f3" "$t1/$t2/$t3" \
    "$o1/$o2/$o3" "$r1/$r2/$r3"
  slopes+=("  VM $i slopes per hour (second half): fds $fs, threads $ts, own RSS $os KiB, total RSS $rs KiB")
  ((bad == 0)) || fail "VM $i: $bad guest rounds failed ($(grep -m1 'round [0-9]* failed' "$work/vm$i.console"))"
  ((ok > 0)) || fail "VM $i: no guest round finished"
  grep -qE 'Call Trace|BUG:|I/O error|blk_update_request' "$work/vm$i.console" &&
    fail "VM $i: kernel errors on the console: $(grep -m1 -E 'Call Trace|BUG:|I/O error|blk_update_request' "$work/vm$i.console")"
  grew "$s" 2 0 && fail "VM $i: open fds grew in the second half"
  grew "$s" 3 0 && fail "VM $i: threads grew in the second half"
  grew "$s" 4 2048 && fail "VM $i: kite's own RSS grew by more than 2 MiB in the second half"
done
printf '%s\n' "${slopes[@]}"
echo "control: $cycles pause/resume cycles, $snapshots VM snapshots, query-blockstats on every sample"

for ((i = 0; i < vms; i++)); do
  ctl "$i" quit >/dev/null 2>&1 || true
  wait "${pids[i]}" || true
  # The one line a quit over the control socket writes is expected; anything else is not.
  if grep -qv '^kite: quit by the control socket$' "$work/vm$i.err"; then
    fail "VM $i: kite wrote to stderr: $(grep -v '^kite: quit by' "$work/vm$i.err" | head -c 500)"
  fi
  qemu-img check -q "$work/vm$i.qcow2" || fail "VM $i: qemu-img check of its overlay"
done
echo "qemu-img check: every overlay checked"
if ((${#failures[@]})); then
  echo "soak: ${#failures[@]} failures"
  exit 1
fi
echo "soak: passed"
