#!/bin/busybox sh
# /bin/hotplug-watch of the "counter" guest (make-rootfs.sh), for tests/e2e/hotplug_e2e_test.cc.
# A disk vdX other than vda that appears gets an ext2 file system holding /hello.txt
# ("hello from vdX"), synced and unmounted, and is read (page cache dropped) every round while
# it is there (a disk whose serial is "busy" is read without a pause instead, until it is
# gone); an ethN that appears is brought up with DHCP and pings 10.0.2.2 through itself.
# Each step is one "kite-hotplug: ..." line on the console, and so is each device's removal.
disks=" "
nics=" "
while true; do
  for d in /sys/block/vd*; do
    [ -e "$d" ] || continue
    n=${d##*/}
    [ "$n" = vda ] && continue
    case "$disks" in *" $n "*) continue ;; esac
    disks="$disks$n "
    echo "kite-hotplug: disk $n added size $(cat "$d/size")"
    if [ "$(cat "$d/serial" 2>/dev/null)" = busy ]; then
      # A disk with serial "busy": direct reads of all of it, over and over, until it is gone.
      (while [ -e "$d" ]; do dd if="/dev/$n" of=/dev/null bs=65536 iflag=direct 2>/dev/null; done) &
      echo "kite-hotplug: disk $n reading"
      continue
    fi
    mkdir -p "/mnt/$n"
    if mke2fs -q "/dev/$n" && mount "/dev/$n" "/mnt/$n" && echo "hello from $n" >"/mnt/$n/hello.txt" &&
      sync && umount "/mnt/$n"; then
      echo "kite-hotplug: disk $n written"
    else
      echo "kite-hotplug: disk $n failed"
    fi
  done
  for n in $disks; do
    if [ -e "/sys/block/$n" ]; then
      echo 1 >/proc/sys/vm/drop_caches
      head -c 4096 "/dev/$n" >/dev/null 2>&1
    else
      echo "kite-hotplug: disk $n removed"
      disks=$(echo "$disks" | sed "s/ $n / /")
    fi
  done
  for d in /sys/class/net/eth*; do
    [ -e "$d" ] || continue
    n=${d##*/}
    case "$nics" in *" $n "*) continue ;; esac
    nics="$nics$n "
    echo "kite-hotplug: nic $n added"
    ip link set "$n" up
    udhcpc -i "$n" -n -q -t 10 -T 1 -s /bin/dhcp-script >/dev/null 2>&1
    addr=$(ip -4 -o addr show dev "$n" | sed -n 's/.* inet \([0-9.]*\).*/\1/p')
    if ping -c 1 -W 2 -I "$n" 10.0.2.2 >/dev/null 2>&1; then p=ok; else p=failed; fi
    echo "kite-hotplug: nic $n ip ${addr:-none} ping $p"
  done
  for n in $nics; do
    [ -e "/sys/class/net/$n" ] && continue
    echo "kite-hotplug: nic $n removed"
    nics=$(echo "$nics" | sed "s/ $n / /")
  done
  sleep 0.2
done
