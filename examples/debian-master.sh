#!/usr/bin/env bash
# debian-master.sh: builds a Debian 12 (bookworm) master image for kite, the way the QEMU/libvirt
# articles do it, without libguestfs and without mounting anything:
#   1. debootstrap a minimal system with Debian's own kernel (linux-image-amd64), an initramfs
#      made by Debian's initramfs-tools, systemd, and DHCP on every Ethernet link (systemd-networkd,
#      with systemd-resolved taking the DNS servers the lease names);
#   2. an ext4 file system made from that tree (mke2fs -d), the whole disk, no partition table;
#   3. converted to qcow2 with kite-img. The kernel and initramfs are copied out beside it, since
#      kite boots without firmware or a boot loader.
#
#   sudo examples/debian-master.sh [-o DIR] [-s SIZE] [-p PASSWORD] [-m MIRROR] [--kite-img PATH]
# Writes DIR/debian-12-master.qcow2, DIR/vmlinuz and DIR/initrd.img (DIR defaults to
# ./debian-master). Needs root (debootstrap), and the packages debootstrap and e2fsprogs. The
# mirror defaults to the one this host's apt uses for bookworm. Downloaded packages are kept in
# ${KITE_CACHE_DIR:-$HOME/.cache/kite}/debian-debs, so a second run downloads nothing.
# Then (docs/TUTORIAL.md):
#   kite-img create -f qcow2 -b DIR/debian-12-master.qcow2 -F qcow2 vm1.qcow2
#   kite run --kernel DIR/vmlinuz --initrd DIR/initrd.img --cmdline "console=ttyS0 root=/dev/vda" \
#     --memory 1G --disk path=vm1.qcow2,format=qcow2 --net user
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
die() { echo "debian-master: error: $*" >&2; exit 1; }
usage() { sed -n '/^#   sudo/,/^# ./p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

out=debian-master size=2G password=kite mirror="" kite_img=""
while (($#)); do
  case $1 in
    -o) out=$2; shift 2 ;;
    -s) size=$2; shift 2 ;;
    -p) password=$2; shift 2 ;;
    -m) mirror=$2; shift 2 ;;
    --kite-img) kite_img=$2; shift 2 ;;
    -h | --help) usage ;;
    *) echo "debian-master: unknown argument '$1'" >&2; usage ;;
  esac
done

[[ $(id -u) -eq 0 ]] || die "debootstrap needs root: run it with sudo"
for tool in debootstrap mke2fs; do
  command -v "$tool" >/dev/null || die "$tool is not installed (apt-get install debootstrap e2fsprogs)"
done
if [[ -z $kite_img ]]; then
  kite_img=$(command -v kite-img || true)
  [[ -n $kite_img ]] || kite_img=$here/../build/src/storage/img/kite-img
fi
[[ -x $kite_img ]] || die "no kite-img at $kite_img (build kite, or pass --kite-img PATH)"

# The archive this host's apt already uses for bookworm: deb822 sources first, then one-line ones.
host_mirror() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -f $f ]] || continue
    awk 'BEGIN { RS = "" } /Suites:[^\n]*bookworm([ \n]|$)/ && /Components:[^\n]*main/ {
           if (match($0, /URIs:[ \t]*[^ \t\n]+/)) {
             split(substr($0, RSTART, RLENGTH), u, /[ \t]+/); print u[2]; exit } }' "$f"
  done | grep -v -- '-security' | head -1
  awk '$1 == "deb" && $3 == "bookworm" { print $2; exit }' /etc/apt/sources.list 2>/dev/null || true
}
[[ -n $mirror ]] || mirror=$(host_mirror | head -1)
[[ -n $mirror ]] || die "no bookworm mirror in this host's apt sources; pass -m MIRROR"

mkdir -p "$out"
out=$(realpath "$out")
cache=${KITE_CACHE_DIR:-$HOME/.cache/kite}/debian-debs
mkdir -p "$cache"
work=$(mktemp -d "${TMPDIR:-/var/tmp}/debian-master.XXXXXX")
root=$work/root
cleanup() {
  for m in proc sys dev/pts dev; do mountpoint -q "$root/$m" 2>/dev/null && umount -l "$root/$m"; done
  rm -rf "$work"
}
trap cleanup EXIT

echo "debian-master: debootstrap bookworm from $mirror (packages cached in $cache)" >&2
# minbase plus what a bootable, networked, loggable-in system needs. systemd-sysv makes systemd
# init; udev loads the virtio drivers; linux-image-amd64 pulls initramfs-tools and runs it;
# systemd-resolved is the resolver (names through the DNS servers DHCP gives).
debootstrap --variant=minbase --cache-dir="$cache" \
  --include=systemd-sysv,systemd-resolved,udev,dbus,kmod,linux-image-amd64,initramfs-tools,iproute2,iputils-ping,procps,e2fsprogs \
  bookworm "$root" "$mirror" > "$work/debootstrap.log" 2>&1 ||
  { tail -30 "$work/debootstrap.log" >&2; die "debootstrap failed (log above)"; }

echo "debian-master: configuring" >&2
echo debian-kite > "$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tdebian-kite\n' > "$root/etc/hosts"
printf '/dev/vda\t/\text4\terrors=remount-ro\t0\t1\n' > "$root/etc/fstab"
echo "root:$password" | chroot "$root" chpasswd
# DHCP on any Ethernet link, whatever the transport names it (eth0 on virtio-mmio, enp0sN on PCI).
cat > "$root/etc/systemd/network/20-dhcp.network" <<'EOF'
[Match]
Type=ether

[Network]
DHCP=yes
EOF
chroot "$root" systemctl enable systemd-networkd.service systemd-resolved.service > /dev/null 2>&1
# Names through resolved's stub (127.0.0.53), which asks the servers of each link's lease (on
# kite's user network, libslirp's DNS proxy 10.0.2.3). debootstrap left the host's file here.
ln -sf ../run/systemd/resolve/stub-resolv.conf "$root/etc/resolv.conf"
# The serial console: systemd starts a getty on every console= of the kernel command line by
# itself; only the apt lists and package files are dropped to keep the master small.
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/*

# The initramfs Debian made at install time used MODULES=most: it already holds virtio_pci,
# virtio_mmio, virtio_blk and ext4. Copy it and the kernel out for a firmware-less boot.
cp "$(ls "$root"/boot/vmlinuz-* | sort -V | tail -1)" "$out/vmlinuz"
cp "$(ls "$root"/boot/initrd.img-* | sort -V | tail -1)" "$out/initrd.img"

echo "debian-master: making the ext4 file system ($size) and the qcow2 image" >&2
mke2fs -q -t ext4 -L debian-root -d "$root" "$work/root.raw" "$size"
"$kite_img" convert -O qcow2 "$work/root.raw" "$out/debian-12-master.qcow2.tmp"
mv "$out/debian-12-master.qcow2.tmp" "$out/debian-12-master.qcow2"
ls -l "$out" >&2
echo "$out/debian-12-master.qcow2"
