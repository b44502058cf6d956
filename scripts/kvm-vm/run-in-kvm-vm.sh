#!/usr/bin/env bash
# Runs COMMAND inside an L1 Linux VM (QEMU TCG, emulated AMD SVM) whose /dev/kvm works.
#   run-in-kvm-vm.sh DIR -- COMMAND [ARGS...]
# The VM sees the host / read-only (with a throw-away writable overlay) and DIR
# read-write at the same path; COMMAND runs as root in the current directory with
# PATH, HOME, LANG, TERM, CI, KITE_*, GTEST_*, CTEST_* and the variables named in
# KITE_VM_ENV passed through. Its stdout+stderr stream to our stdout; we exit with its
# status, 124 on timeout, 125 when the VM failed before COMMAND finished.
#   KITE_VM_TIMEOUT  seconds before QEMU is killed (default 1800)
#   KITE_VM_IDLE_TIMEOUT  seconds of an idle VM (QEMU under 2 s of CPU, no output) before it
#                    is taken for wedged and killed, exit 124 (default 300; 0: never)
#   KITE_VM_CPUS     vCPUs (default 1: with 2, multi-threaded TCG's nested SVM sometimes wedged
#                    the VM or corrupted a nested guest's state; 1 ran clean and as fast)
#   KITE_VM_MEM      MiB (default 2048)
#   KITE_VM_KERNEL   kernel version in /boot and /lib/modules (default: newest)
#   KITE_VM_CPU      QEMU -cpu model (default max: SVM + NPT + VGIF under TCG)
#   KITE_VM_KERNEL_IMAGE  kernel image to boot (default: vmlinux extracted from
#                    /boot/vmlinuz-VERSION into KITE_VM_CACHE, ~/.cache/kite-kvm-vm)
#   KITE_VM_KVM_AMD_PARAMS  kvm-amd module parameters (default nested=0)
#   KITE_VM_VERBOSE=1  copy the VM's kernel console to stderr
#   KITE_VM_LOCK     lock file: one nested VM at a time on this host, the next waits for it (two
#                    TCG VMs on a 2-core machine slow each other past the idle timeout);
#                    default /tmp/kite-kvm-vm.lock, empty: no lock
#   KITE_VM_INTERACTIVE=1  COMMAND gets this terminal (stdin and stdout, through the VM's
#                    second serial port, ttyS1) instead of the output stream: scripts/boot.sh
#                    uses it to run kite with its console here when the host has no /dev/kvm
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
usage() { echo "usage: $0 DIR -- COMMAND [ARGS...]" >&2; exit 2; }
(($# >= 3)) && [[ $2 == -- ]] || usage
dir=$(realpath -e "$1") || usage
[[ -d $dir ]] || usage
shift 2

timeout_s=${KITE_VM_TIMEOUT:-1800}
kver=${KITE_VM_KERNEL:-$(find /lib/modules -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort -V | tail -1)}
moddir=/lib/modules/$kver
for f in "/boot/vmlinuz-$kver" "$moddir/modules.dep" /bin/busybox "$(command -v qemu-system-x86_64 || echo qemu-system-x86_64)"; do
  [[ -e $f ]] || { echo "kite-vm: missing $f; run scripts/kvm-vm/setup.sh" >&2; exit 125; }
done

# The bzImage's xz decompressor takes seconds under TCG: boot the uncompressed
# vmlinux through its PVH entry instead (extracted once, cached).
kernel=${KITE_VM_KERNEL_IMAGE:-}
if [[ -z $kernel ]]; then
  cache=${KITE_VM_CACHE:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/kite-kvm-vm}
  kernel=$cache/vmlinux-$kver
  if [[ ! -s $kernel ]]; then
    mkdir -p "$cache"
    bz=/boot/vmlinuz-$kver
    off=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$bz" | head -1 | cut -d: -f1 || true)
    # xz complains about the bytes after the stream; the ELF check below decides.
    [[ -n $off ]] && { tail -c +$((off + 1)) "$bz" | xz -dc > "$kernel.$$" 2>/dev/null || true; }
    if [[ -s $kernel.$$ && $(head -c 4 "$kernel.$$" | od -An -tx1 | tr -d ' ') == 7f454c46 ]]; then
      mv "$kernel.$$" "$kernel"
    else
      rm -f "$kernel.$$"
      kernel=$bz
    fi
  fi
fi

lock=${KITE_VM_LOCK-/tmp/kite-kvm-vm.lock}
if [[ -n $lock ]]; then
  exec 9>>"$lock"
  flock -n 9 || { echo "kite-vm: waiting for the nested VM in use ($lock)" >&2; flock 9; }
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/kite-vm.XXXXXX")
qemu_pid=""
cleanup() {
  [[ -n $qemu_pid ]] && kill -TERM "$qemu_pid" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Initramfs: static busybox, our init, the modules for 9p, overlay and KVM, and dm-mod, loop
# and tun for the fault tests (tests/fault), bridge for the bridged-tap tests (tests/kvm).
ir=$tmp/initramfs
mkdir -p "$ir"/{bin,dev,proc,sys,modules} "$tmp/ctl"
cp /bin/busybox "$ir/bin/"
cp "$here/init.sh" "$ir/init"
for m in virtio_pci 9pnet_virtio 9p overlay kvm_amd dm_mod loop tun bridge; do
  modprobe -S "$kver" -d / --show-depends "$m" | awk '$1 == "insmod" { print $2 }'
done | awk '!seen[$0]++' | while read -r ko; do
  cp "$ko" "$ir/modules/"
  basename "$ko" >> "$ir/modules/order"
done
# kvm_amd: no nested (L3) needed; keep nested paging (measured to work under TCG).
printf 'kvm-amd %s\n' "${KITE_VM_KVM_AMD_PARAMS:-nested=0}" > "$ir/modules/params"
(cd "$ir" && find . | cpio -o -H newc --quiet) > "$tmp/initramfs.cpio"

# The job: working directory, environment, command.
{
  printf 'cd -- %q || exit 125\n' "$PWD"
  while IFS= read -r -d '' kv; do
    name=${kv%%=*}
    if [[ $name =~ ^(PATH|HOME|LANG|LC_[A-Z]+|TERM|CI|KITE_[A-Za-z0-9_]*|GTEST_[A-Za-z0-9_]*|CTEST_[A-Za-z0-9_]*)$ ]] ||
       [[ " ${KITE_VM_ENV:-} " == *" $name "* ]]; then
      printf 'export %s=%q\n' "$name" "${kv#*=}"
    fi
  done < <(env -0)
  printf 'exec'
  printf ' %q' "$@"
  printf '\n'
} > "$tmp/ctl/job.sh"
printf '%s' "$dir" > "$tmp/ctl/dir"
interactive=${KITE_VM_INTERACTIVE:-0}
[[ $interactive == 1 ]] && : > "$tmp/ctl/interactive"
: > "$tmp/ctl/output"

# Interactive: QEMU's stdio (raw mode on a terminal; Ctrl-C goes to the guest) is ttyS1.
terminal=() qemu_in=/dev/null qemu_out=$tmp/qemu.log
if [[ $interactive == 1 ]]; then
  terminal=(-chardev stdio,id=term,signal=off -serial chardev:term)
  qemu_in=/dev/stdin qemu_out=/dev/stdout
fi
quiet="quiet loglevel=4"
[[ ${KITE_VM_VERBOSE:-0} == 1 ]] && quiet=""
virtfs=security_model=none,multidevs=remap
# QEMU's human monitor on two FIFOs (the pipe chardev: mon.in, mon.out): the wedge watchdog
# below reads the vCPU's registers and local APIC through it, and kicks the VM.
mkfifo "$tmp/mon.in" "$tmp/mon.out"
monitor=()
[[ $interactive != 1 ]] && monitor=(-monitor "pipe:$tmp/mon")
start=$(date +%s.%N)
timeout -k 5 "$timeout_s" qemu-system-x86_64 \
  -accel tcg -cpu "${KITE_VM_CPU:-max}" -smp "${KITE_VM_CPUS:-1}" -m "${KITE_VM_MEM:-2048}" \
  -M q35 -nodefaults -no-reboot -display none -no-user-config \
  -kernel "$kernel" -initrd "$tmp/initramfs.cpio" \
  -append "console=ttyS0 $quiet panic=-1 tsc=reliable" \
  -serial "file:$tmp/console.log" \
  -virtfs "local,path=/,mount_tag=hostroot,readonly=on,$virtfs" \
  -virtfs "local,path=${dir//,/,,},mount_tag=work,$virtfs" \
  -virtfs "local,path=${tmp//,/,,}/ctl,mount_tag=ctl,$virtfs" \
  "${terminal[@]}" "${monitor[@]}" < "$qemu_in" > "$qemu_out" 2>> "$tmp/qemu.log" &
qemu_pid=$!
if [[ ${KITE_VM_VERBOSE:-0} == 1 ]]; then
  touch "$tmp/console.log"
  tail -n +1 -f --pid="$qemu_pid" "$tmp/console.log" >&2 &
fi
tail -c +1 -f --pid="$qemu_pid" "$tmp/ctl/output" &
tail_pid=$!
# The wedge watchdog: a VM whose QEMU used under 2 s of CPU while the command wrote nothing has
# wedged (its kernel sits halted; seen now and then under TCG's nested SVM). After
# KITE_VM_KICK_AFTER seconds (20) the watchdog saves the vCPU's registers and local APIC
# (into the report) and kicks the VM: an NMI and a key press on the PS/2 keyboard, whose
# interrupt makes QEMU look at the local APIC again (a wedge with an interrupt pending in the
# APIC but never delivered would end there). A VM still idle after KITE_VM_IDLE_TIMEOUT
# seconds (default 300) is killed and reported as timed out (exit 124, which scripts/test.sh
# retries), instead of idling until KITE_VM_TIMEOUT.
idle_limit=${KITE_VM_IDLE_TIMEOUT:-300}
kick_after=${KITE_VM_KICK_AFTER:-20}
if [[ $interactive != 1 ]]; then
  # QEMU's monitor replies; opened read-write so that opening never blocks.
  cat 0<>"$tmp/mon.out" > "$tmp/monitor.log" &
  monitor_reader=$!
fi
if [[ $interactive != 1 ]] && ((idle_limit > 0)); then
  (
    cpu() { ps -o times= --ppid "$1" 2>/dev/null | awk '{ s += $1 } END { print s + 0 }'; }
    hmp() { printf '%s\n' "$@" 1<>"$tmp/mon.in"; }
    last_cpu=$(cpu "$qemu_pid") last_size=-1 since=$SECONDS kicked=0
    while kill -0 "$qemu_pid" 2>/dev/null; do
      sleep 10
      now_cpu=$(cpu "$qemu_pid") size=$(stat -c %s "$tmp/ctl/output" 2>/dev/null || echo 0)
      if ((size != last_size || now_cpu - last_cpu >= 2)); then
        ((kicked)) && echo "kite-vm: the VM woke up after the kick ($((SECONDS - since)) s idle)" >> "$tmp/kicks"
        last_cpu=$now_cpu last_size=$size since=$SECONDS kicked=0
      elif ((!kicked && kick_after > 0 && SECONDS - since >= kick_after)); then
        kicked=1
        echo "kite-vm: the VM sat idle for $((SECONDS - since)) s: its state, then an NMI and a key press" >> "$tmp/kicks"
        hmp "info registers" "info lapic" "info pic" "info irq"
        sleep 2
        hmp "nmi" "sendkey shift"
      elif ((SECONDS - since >= idle_limit)); then
        : > "$tmp/idle"
        pkill -KILL --parent "$qemu_pid" qemu-system-x86 2>/dev/null || kill -KILL "$qemu_pid"
        break
      fi
    done
  ) &
  watchdog_pid=$!
fi
rc=0
wait "$qemu_pid" || rc=$?
qemu_pid=""
if [[ -n ${watchdog_pid:-} ]]; then kill "$watchdog_pid" 2>/dev/null || true; fi
if [[ -n ${monitor_reader:-} ]]; then kill "$monitor_reader" 2>/dev/null || true; fi
# Kicks and what the monitor said: kept where the next wedge can be studied.
if [[ -s $tmp/kicks ]]; then
  cat "$tmp/kicks" >&2
  keep=${KITE_VM_CACHE:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/kite-kvm-vm}/wedges
  mkdir -p "$keep" && cat "$tmp/kicks" "$tmp/monitor.log" "$tmp/console.log" \
    > "$keep/$(date +%Y%m%d-%H%M%S).log" 2>/dev/null || true
  echo "kite-vm: the VM's registers and local APIC at the kick: $keep" >&2
fi
wait "$tail_pid" || true
wait || true
elapsed=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')

if [[ -e $tmp/idle ]]; then
  echo "kite-vm: WEDGED: the VM used no CPU and the command wrote nothing for ${idle_limit} s (KITE_VM_IDLE_TIMEOUT); killed it; console tail:" >&2
  tail -n 20 "$tmp/console.log" >&2 || true
  exit 124
fi
if ((rc == 124 || rc == 137)); then
  echo "kite-vm: TIMEOUT: killed the VM after ${timeout_s} s (KITE_VM_TIMEOUT); console tail:" >&2
  tail -n 20 "$tmp/console.log" >&2 || true
  exit 124
fi
if [[ ! -s $tmp/ctl/status ]]; then
  echo "kite-vm: the VM stopped before the command finished (qemu exit $rc); qemu and console tail:" >&2
  tail -n 20 "$tmp/qemu.log" "$tmp/console.log" >&2 || true
  exit 125
fi
status=$(cat "$tmp/ctl/status")
[[ ${KITE_VM_VERBOSE:-0} == 1 ]] && echo "kite-vm: exit $status after ${elapsed} s" >&2
exit "$status"
