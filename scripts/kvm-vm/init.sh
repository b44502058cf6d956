#!/bin/busybox sh
# /init of the L1 VM started by run-in-kvm-vm.sh (busybox-static initramfs).
# Shares (9p, tags set by the runner):
#   hostroot  host /, read-only; becomes the lower layer of an overlay whose upper
#             layer is a tmpfs, so the whole host system (libraries, tools) is there
#             and writable, but writes outside DIR are thrown away
#   work      host DIR, read-write, mounted at the same absolute path
#   ctl       per-run directory: dir (DIR), job.sh (cwd, env, command);
#             we write output (command stdout+stderr) and status (exit code)
set -u
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
log() { echo "kite-vm init: $*" > /dev/ttyS0; }
die() { log "$*"; echo "kite-vm init: $*" >> /ctl/output 2>/dev/null; poweroff -f; }

for m in $(cat /modules/order); do
  # shellcheck disable=SC2046 # the parameters are meant to split into words
  insmod "/modules/$m" $(grep "^${m%.ko} " /modules/params | cut -d' ' -f2-) || log "insmod $m failed"
done

# Loopback up, as on any host: tests listen and connect on 127.0.0.1 (the jail's network walls).
ip link set lo up || log "cannot bring up lo"

p9="trans=virtio,version=9p2000.L,msize=512000"
mkdir -p /ctl /lower /upper /newroot
mount -t 9p -o "$p9,cache=none" ctl /ctl || die "cannot mount the ctl share"
mount -t 9p -o "$p9,cache=loose,ro" hostroot /lower || die "cannot mount the host root"
mount -t tmpfs -o mode=755 tmpfs /upper
mkdir -p /upper/up /upper/work
mount -t overlay -o lowerdir=/lower,upperdir=/upper/up,workdir=/upper/work overlay /newroot ||
  die "cannot mount the overlay root"

r=/newroot
mount -t proc proc $r/proc
mount -t sysfs sys $r/sys
# cgroup v2 for the jail's tests (kite run --jail --cgroup, docs/SECURITY.md).
# A failure is only reported: the jail's cgroup test then fails (CI=true) and says why.
mount -t cgroup2 none $r/sys/fs/cgroup || log "cannot mount cgroup2 at /sys/fs/cgroup"
mount -t devtmpfs dev $r/dev
mkdir -p $r/dev/pts $r/dev/shm
mount -t devpts devpts $r/dev/pts
mount -t tmpfs tmpfs $r/dev/shm
mount -t tmpfs tmpfs $r/run
mount -t tmpfs -o mode=1777 tmpfs $r/tmp
dir=$(cat /ctl/dir)
mkdir -p "$r$dir"
mount -t 9p -o "$p9,cache=mmap" work "$r$dir" || die "cannot mount $dir"
cp /ctl/job.sh $r/run/kite-job.sh
[ -e /dev/kvm ] || die "no /dev/kvm in the VM (kvm_amd did not load; see the console log)"

if [ -e /ctl/interactive ]; then
  # The job gets the runner's terminal on ttyS1 (setsid -c: as its controlling terminal).
  chroot $r /usr/bin/setsid -c -w /usr/bin/env -i /bin/bash /run/kite-job.sh \
    < /dev/ttyS1 > /dev/ttyS1 2>&1
else
  chroot $r /usr/bin/env -i /bin/bash /run/kite-job.sh > /ctl/output 2>&1 < /dev/null
fi
echo $? > /ctl/status
sync
poweroff -f
