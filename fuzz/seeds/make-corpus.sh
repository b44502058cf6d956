#!/usr/bin/env bash
# Rewrites the committed seed corpora in fuzz/corpus/ (docs/FUZZING.md): qcow2 and VMDK images
# made with qemu-img, and the kernel, config, virtio-mmio, virtio-pci, virtio-net, vsock and
# balloon seeds that fuzz/seeds/make_seeds.cc writes. Needs qemu-img and the fuzz build
# (make_seeds):
#   fuzz/seeds/make-corpus.sh [BUILD_DIR]        (default build-fuzz)
# The seeds of virtqueue_fuzzer and virtio_blk_fuzzer are kept from campaigns (libFuzzer's
# -merge=1) and are left alone, as are virtio_pci_fuzzer's inputs from a campaign (named by SHA-1;
# make_seeds rewrites the others there).
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build-fuzz}
corpus=fuzz/corpus
ninja -C "$build" make_seeds >/dev/null
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

rm -rf "$corpus"/{kernel_loader_fuzzer,config_json_fuzzer,virtio_mmio_fuzzer,virtio_net_fuzzer}
rm -rf "$corpus"/{vsock_fuzzer,vsock_device_fuzzer,virtio_balloon_fuzzer}
rm -rf "$corpus"/{vmdk_fuzzer,qcow2_image_fuzzer,qcow2_header_fuzzer,qmp_fuzzer,qed_fuzzer}
"$build"/fuzz/make_seeds "$corpus"

# qcow2: small clusters so that a few KiB of data need L2 tables and refcount blocks.
img() { qemu-img "$@" >/dev/null; }
pattern() { # pattern FILE OFFSET LEN BYTE: writes LEN bytes of BYTE at OFFSET
  head -c "$3" /dev/zero | tr '\0' "\\$(printf '%03o' "$4")" |
    dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}
q=$tmp/qcow2
mkdir -p "$q"
img create -f qcow2 -o cluster_size=4096 "$q/empty.qcow2" 1M
img create -f qcow2 -o cluster_size=4096 "$q/data.qcow2" 1M
head -c 65536 /dev/zero >"$q/raw"
pattern "$q/raw" 0 8192 171
pattern "$q/raw" 40960 4096 205
img convert -f raw -O qcow2 -o cluster_size=4096 "$q/raw" "$q/data.qcow2"
cp "$q/data.qcow2" "$q/snapshot.qcow2"
img snapshot -c snap1 "$q/snapshot.qcow2"
img create -f qcow2 -o cluster_size=4096,compat=0.10 "$q/v2.qcow2" 1M
img create -f qcow2 -o cluster_size=4096,refcount_bits=1,lazy_refcounts=on "$q/lazy.qcow2" 1M
img convert -c -f raw -O qcow2 -o cluster_size=4096 "$q/raw" "$q/compressed.qcow2"
img create -f qcow2 -u -o cluster_size=4096 -b base.qcow2 -F qcow2 "$q/overlay.qcow2" 1M
img create -f qcow2 -u -o cluster_size=4096 -b base.raw -F raw "$q/overlay-raw.qcow2" 1M
# External data files (the fuzzer gives every such image its own data file, as data_file= does).
(cd "$q" && img create -f qcow2 -o cluster_size=4096,data_file=datafile.data datafile.qcow2 1M)
(cd "$q" && img convert -f raw -O qcow2 -o cluster_size=4096,data_file=datafile-raw.data,data_file_raw=on raw datafile-raw.qcow2)
# Extended L2 entries (16 KiB clusters, the smallest they allow): partial subclusters written
# by qemu-io, allocated, zero and unallocated side by side in one cluster.
img create -f qcow2 -o cluster_size=16384,extended_l2=on "$q/extended.qcow2" 1M
qemu-io -c 'write -P 0x5a 4k 1k' -c 'write -z 8k 1k' -c 'write -P 0x6b 32k 16k' \
  -c 'write -P 0x7c 100k 3k' "$q/extended.qcow2" >/dev/null
mkdir -p "$corpus/qcow2_image_fuzzer"
for f in "$q"/*.qcow2; do
  cp "$f" "$corpus/qcow2_image_fuzzer/$(basename "$f")"
  "$build"/fuzz/make_seeds --qcow2-program "$f" \
    "$corpus/qcow2_image_fuzzer/$(basename "$f" .qcow2)-io.bin"
done

# A regression input: a snapshot name that is not UTF-8, printed by kite-img info as JSON (the
# program: no I/O, then snapshot byte 0x10: info as JSON only).
img create -f qcow2 -o cluster_size=4096 "$q/name.qcow2" 1M
img snapshot -c $'snap\xff' "$q/name.qcow2"
{ cat "$q/name.qcow2"; printf '\x10\x00'; } >"$corpus/qcow2_image_fuzzer/snapshot-name-not-utf8.bin"
mkdir -p "$corpus/qcow2_header_fuzzer"
cp "$q"/*.qcow2 "$corpus/qcow2_header_fuzzer/"

# QMP: the first byte sets the read size (1 + byte % 64), then the client's bytes.
mkdir -p "$corpus/qmp_fuzzer"
printf '%s' '@{"execute": "qmp_capabilities"}' $'\r\n' \
  '{"execute": "query-status", "id": 1}' $'\n' '{"execute": "query-block"}' $'\n' \
  '{"execute": "query-name"}' $'\n' '{"execute": "query-version", "id": "v"}' $'\n' \
  >"$corpus/qmp_fuzzer/session.txt"
printf '%s' $'\x07' '{"execute": "qmp_capabilities"}' $'\n' '{"execute": "stop", "arguments": {}}' \
  $'\n' '{"execute": "nope"}' $'\n' '[1, 2]' $'\n' '{"execute": "cont", "extra": [[[{}]]]}' \
  $'\n' '{"execute": "query-status"' >"$corpus/qmp_fuzzer/malformed.txt"

# VMDK: monolithicSparse and streamOptimized (compressed grains, footer), with data in them.
mkdir -p "$corpus/vmdk_fuzzer"
for subformat in monolithicSparse streamOptimized; do
  img convert -f raw -O vmdk -o subformat=$subformat "$q/raw" "$corpus/vmdk_fuzzer/$subformat.vmdk"
done
img create -f vmdk "$corpus/vmdk_fuzzer/empty.vmdk" 1M
# Descriptor files (their extents are not in the input: the descriptor text is what is fuzzed).
for subformat in monolithicFlat twoGbMaxExtentSparse; do
  img create -f vmdk -o subformat=$subformat "$tmp/$subformat.vmdk" 1M
  cp "$tmp/$subformat.vmdk" "$corpus/vmdk_fuzzer/$subformat-descriptor.vmdk"
done
# QED: small clusters and tables (4 KiB), data, a zero cluster, and overlays whose backing
# names are the files qed_fuzzer provides (base.raw, marked raw; base.qcow2, probed).
e=$tmp/qed
mkdir -p "$e" "$corpus/qed_fuzzer"
img create -f qed -o cluster_size=4096,table_size=1 "$e/empty.qed" 1M
img convert -f raw -O qed -o cluster_size=4096,table_size=2 "$q/raw" "$e/data.qed"
img create -f raw "$e/base.raw" 256K
img create -f qcow2 "$e/base.qcow2" 256K
(cd "$e" && img create -f qed -o cluster_size=4096,table_size=2 -b base.raw -F raw over-raw.qed 1M)
(cd "$e" && img create -f qed -o cluster_size=4096,table_size=2 -b base.qcow2 -F qcow2 \
  over-qcow2.qed 1M)
qemu-io -f qed -c 'write -P 0x5a 4096 8192' -c 'write -z 65536 4096' "$e/over-raw.qed" >/dev/null
cp "$e"/{empty,data,over-raw,over-qcow2}.qed "$corpus/qed_fuzzer/"
ls "$corpus"/* | head -100
