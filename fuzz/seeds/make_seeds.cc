// make_seeds: writes the hand-made seed inputs of the fuzzers into fuzz/corpus/ (run by
// fuzz/seeds/make-corpus.sh, which also makes the qcow2 and VMDK images with qemu-img).
//
//   make_seeds DIR                      the kernel, config, virtio-mmio, virtio-pci,
//                                       virtio-net, vsock and balloon seeds, each into
//                                       DIR/<fuzzer>/
//   make_seeds --qcow2-program IN OUT   IN (a qcow2 image) with an I/O program appended, as
//                                       qcow2_image_fuzzer reads it
//
// The program-style fuzzers read their integers with FuzzedDataProvider, which takes them from
// the END of the input (and byte strings from the front); FdpInput below writes inputs that way
// and must follow each fuzzer's order of reads. A seed that drifts out of step is still a
// valid input, only a less useful one.

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <utility>
#include <vector>

#include "kite/kite.h"
#include "unit/vmm/boot/test_images.h"
#include "virtio/balloon_request.h"
#include "virtio/virtio_spec.h"
#include "virtio/vsock_packet.h"
#include "vmm/config_json.h"
#include "vmm/snapshot/device_state_json.h"
#include "vmm/snapshot/kvm_state_json.h"
#include "vmm/snapshot/memory_file.h"
#include "vmm/snapshot/pci_state_json.h"
#include "vmm/snapshot/virtio_state_json.h"

namespace {

using Bytes = std::vector<uint8_t>;
namespace fs = std::filesystem;

// An input as FuzzedDataProvider consumes it: Front() bytes in order from the start;
// integers in order from the end (each little-endian, in as few bytes as its range needs).
class FdpInput {
 public:
  void Front(const void* data, size_t n) {
    auto* p = static_cast<const uint8_t*>(data);
    front_.insert(front_.end(), p, p + n);
  }
  // ConsumeIntegralInRange<T>(min, max) returning `value`.
  void Int(uint64_t value, uint64_t min, uint64_t max) {
    uint64_t range = max - min, v = value - min;
    Bytes le;
    for (int shift = 0; shift < 64 && (range >> shift) > 0; shift += 8) le.push_back(0);
    for (size_t i = le.size(); i-- > 0; v >>= 8) le[i] = static_cast<uint8_t>(v);
    back_.push_back(le);  // le[0] is consumed first: the most significant byte
  }
  void U8(uint8_t v) { Int(v, 0, 0xff); }
  void U16(uint16_t v) { Int(v, 0, 0xffff); }
  void U32(uint32_t v) { Int(v, 0, 0xffffffff); }
  void U64(uint64_t v) { Int(v, 0, ~uint64_t{0}); }
  void Bool(bool v) { U8(v ? 1 : 0); }
  Bytes Build() const {
    Bytes out = front_;
    for (size_t i = back_.size(); i-- > 0;) {
      // Consumed from the end, most significant byte first: stored least significant first.
      out.insert(out.end(), back_[i].rbegin(), back_[i].rend());
    }
    return out;
  }

 private:
  Bytes front_;
  std::vector<Bytes> back_;
};

void Write(const fs::path& path, const Bytes& bytes) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes.data()),
             static_cast<std::streamsize>(bytes.size()));
}
void WriteText(const fs::path& path, const std::string& text) {
  Write(path, Bytes(text.begin(), text.end()));
}

// --- kernel_loader_fuzzer: an ELF vmlinux (64-bit entry; with a PVH note) and a bzImage ---

// Built with the boot tests' image builders (tests/unit/vmm/boot/kernel_images.cc).
Bytes Elf(bool pvh) {
  kite::boot::testing::ElfOptions o;
  o.pvh_note = pvh;
  // Text at 2 MiB (the entry inside it; a virtual e_entry to translate when not PVH) and data
  // with bss.
  o.entry = pvh ? 0x200000 : 0xffffffff80200000ull;
  o.segments = {{0x200000, std::string(0x100, '\x90'), 0x2000},
                {0x400000, std::string(0x80, '\x90'), 0x10000}};
  std::string image = kite::boot::testing::MakeElf(o);
  return Bytes(image.begin(), image.end());
}

Bytes BzImage() {
  std::string image = kite::boot::testing::MakeBzImage();
  return Bytes(image.begin(), image.end());
}

// --- config_json_fuzzer: configs as kite writes them (ConfigToJson) and as people do ---

void Configs(const fs::path& dir) {
  kite::VmConfig small;
  small.kernel = "vmlinux";
  WriteText(dir / "written-default.json", kite::ConfigToJson(small).dump(2));
  kite::VmConfig full = small;
  full.initrd = "initrd.img";
  full.cpus = 4;
  full.memory = 1ull << 30;
  full.serial = kite::SerialMode::kFile;
  full.serial_path = "console.log";
  full.transport = kite::VirtioTransportKind::kPci;
  full.disks = {{.path = "root.qcow2",
                 .format = "qcow2",
                 .cache = "none",
                 .serial = "root",
                 .queues = 2,
                 .id = "root"},
                {.path = "data.raw", .format = "raw", .read_only = true}};
  full.nets = {{.backend = kite::NetBackendKind::kUser,
                .mac = "52:54:00:12:34:56",
                .hostfwd = {"tcp::2222-:22"},
                .id = "net0"},
               {.backend = kite::NetBackendKind::kTap, .tap = "tap0"}};
  full.pci_slots = {{"root", 3}, {"net0", 5}};
  full.name = "vm1";
  full.api_sock = "api.sock";
  WriteText(dir / "written-full.json", kite::ConfigToJson(full).dump(2));
  WriteText(dir / "hand-minimal.json", R"({"kernel": "vmlinux", "memory": "256M"})");
  WriteText(dir / "hand-devices.json", R"({
  "kernel": "/boot/vmlinux", "cmdline": "console=ttyS0 root=/dev/vda", "cpus": 2,
  "memory": 536870912, "acpi": false, "on_reboot": "restart", "rng": false,
  "disks": [{"path": "disk.qcow2", "format": "qcow2", "readonly": false, "cache": "unsafe"}],
  "nets": [{"backend": "user", "hostfwd": ["tcp::8080-:80", "udp:127.0.0.1:5353-:53"]}],
  "unplug_timeout_ms": 500, "paused": true, "stats": true, "host_quirks": false,
  "cpu_template": "minimal"
})");
}

// --- snapshot_state_fuzzer: a state body as kite writes it, from default states ---

std::string StateBody() {
  using namespace kite::snapshot;
  nlohmann::json body;
  MemoryFileLayout layout{{{0, 256 << 20, 0}}, 256 << 20};
  body["memory"] = MemoryLayoutToJson(layout);
  body["vm"] = ToJson(kite::VmState{});
  body["vcpus"] = nlohmann::json::array({ToJson(kite::VcpuState{})});
  body["devices"]["com1"] = UartStateToJson({});
  body["devices"]["i8042"] = I8042StateToJson({});
  body["devices"]["rtc"] = RtcStateToJson({});
  body["devices"]["ged"] = GedStateToJson({});
  kite::virtio::TransportState transport;
  transport.device_id = 2;
  transport.status = 15;
  transport.driver_features = 1ull << 32;
  transport.queues.resize(1);
  body["devices"]["vda"] = TransportStateToJson(transport);
  kite::virtio::PciTransportState pci;
  pci.virtio = transport;
  body["devices"]["vdb"] = PciTransportStateToJson(pci);
  return body.dump(1);
}

// --- virtio_mmio_fuzzer: the handshake, chains and interrupt acks, per device kind ---

// Mirrors Guest::Handshake's reads: the accepted-features mask, then a size exponent per queue.
void Handshake(FdpInput& in, int queues) {
  in.Int(4, 0, 8);
  in.U64(~uint64_t{0});
  for (int q = 0; q < queues; ++q) in.Int(4, 0, 8);  // 16 entries
}

// Which program step a chain is in a fuzzer: its op code, the last op code, the last queue.
struct ChainStep {
  uint64_t op;
  uint64_t last_op;
  uint32_t last_queue;
};
constexpr ChainStep kMmioChain{5, 8, 1};
constexpr ChainStep kPciChain{11, 13, 3};

// Mirrors Guest::Chain and fuzz::WriteChain: descriptors into the buffer area (kBufferBase
// 1 MiB).
void Chain(FdpInput& in, const ChainStep& step, uint32_t queue, uint16_t head,
           const uint8_t header[16], const std::vector<std::pair<uint32_t, bool>>& bufs) {
  in.Int(step.op, 0, step.last_op);
  in.Int(queue, 0, step.last_queue);
  in.U16(head);
  in.Int(bufs.size(), 1, 4);
  for (size_t i = 0; i < bufs.size(); ++i) {
    in.Int(2, 0, 3);  // an address in the buffer area
    in.Int(0x10000 * (i + 1) + head * 0x1000, 0, 0x2fffff);
    in.Bool(true);  // a small length
    in.Int(bufs[i].first, 0, 4096);
    in.U8(bufs[i].second ? kite::virtio::kDescFlagWrite : 0);
    if (i == 0) in.Front(header, 16);
  }
}

Bytes MmioSeed(uint8_t kind) {
  FdpInput in;
  in.U8(kind);
  int queues = kind % 4 == 3 ? 2 : 1;
  Handshake(in, queues);
  uint8_t header[16] = {};
  if (kind % 4 == 1 || kind % 4 == 2) {  // virtio-blk: a read of sector 1, then a write
    header[0] = 0;                       // VIRTIO_BLK_T_IN
    header[8] = 1;
    Chain(in, kMmioChain, 0, 0, header, {{16, false}, {512, true}, {1, true}});
    header[0] = 1;  // VIRTIO_BLK_T_OUT
    Chain(in, kMmioChain, 0, 3, header, {{16, false}, {512, false}, {1, true}});
  } else if (kind % 4 == 0) {  // virtio-rng: fill a buffer
    Chain(in, kMmioChain, 0, 0, header, {{64, true}});
  } else {  // virtio-net: a receive buffer, a frame to send
    Chain(in, kMmioChain, 0, 0, header, {{1526, true}});
    Chain(in, kMmioChain, 1, 0, header, {{12, false}, {60, false}});
  }
  in.Int(8, 0, 8);  // read InterruptStatus, ack it
  in.Int(1, 0, 8);  // read a register: the status
  in.Int(15, 0, 25);
  return in.Build();
}

// --- virtio_pci_fuzzer: Linux's probe, chains and acknowledgements, per device kind ---

// Mirrors Guest::Probe for the only function (Pick reads nothing then): the mechanism, kite's
// BAR address, the accepted features, a size exponent per queue.
void PciProbe(FdpInput& in, bool ecam, int queues) {
  in.Int(10, 0, 13);
  in.Bool(ecam);
  in.Int(0, 0, 7);
  in.U64(~uint64_t{0});
  for (int q = 0; q < queues; ++q) in.Int(4, 0, 8);  // 16 entries
}

Bytes PciSeed(uint8_t kind, bool ecam) {
  FdpInput in;
  in.U8(kind);
  PciProbe(in, ecam, kind % 4 == 3 ? 2 : 1);
  uint8_t header[16] = {};
  if (kind % 4 == 1 || kind % 4 == 2) {  // virtio-blk: a read of sector 1, then a write
    header[8] = 1;
    Chain(in, kPciChain, 0, 0, header, {{16, false}, {512, true}, {1, true}});
    header[0] = 1;  // VIRTIO_BLK_T_OUT
    Chain(in, kPciChain, 0, 3, header, {{16, false}, {512, false}, {1, true}});
  } else if (kind % 4 == 0) {  // virtio-rng: fill a buffer
    Chain(in, kPciChain, 0, 0, header, {{64, true}});
  } else {  // virtio-net: a receive buffer, a frame to send
    Chain(in, kPciChain, 0, 0, header, {{1526, true}});
    Chain(in, kPciChain, 1, 0, header, {{12, false}, {60, false}});
  }
  in.Int(13, 0, 13);  // poll, read ISR and the PBA
  return in.Build();
}

// A second function hot-added (GED), probed, its slot read from the GED, then ejected by the
// guest (_EJ0 writes slot 2).
Bytes PciHotplugSeed() {
  FdpInput in;
  in.U8(0);  // virtio-rng in slot 1
  in.Int(9, 0, 13);
  in.Int(2, 0, 4);
  in.U8(1);  // a virtio-blk in slot 2
  in.Int(10, 0, 13);
  in.Int(1, 0, 1);  // the second function
  in.Bool(true);
  in.Int(0, 0, 7);
  in.U64(~uint64_t{0});
  in.Int(4, 0, 8);
  in.Int(9, 0, 13);  // the GED's SLOT_CHECK, 32 bits
  in.Int(1, 0, 4);
  in.Int(2, 0, 4);
  in.Int(2, 0, 2);
  in.Int(9, 0, 13);  // _EJ0 of slot 2
  in.Int(0, 0, 4);
  in.Bool(true);
  in.Int(2, 0, 5);
  return in.Build();
}

// --- virtio_net_fuzzer: header checks, then a TX frame, RX buffers and a received frame ---

Bytes NetSeed(bool vnet, bool direct, bool mergeable) {
  namespace net = kite::virtio::net;
  using kite::virtio::FeatureBit;
  FdpInput in;
  net::Header tx{net::kHdrFlagNeedsCsum, net::kGsoTcpv4, 54, 1448, 34, 16, 0};
  net::Header rx{};
  in.Front(&tx, sizeof(tx));  // CheckHeaders: a TSO frame
  uint64_t features = FeatureBit(net::kFeatureCsum) | FeatureBit(net::kFeatureHostTso4) |
                      FeatureBit(net::kFeatureGuestCsum) | FeatureBit(net::kFeatureMrgRxbuf);
  in.U64(features);
  in.Int(2000, 0, 70000);
  in.Bool(vnet);
  in.Front(&rx, sizeof(rx));
  in.Bool(vnet);  // the device
  if (vnet) in.Bool(direct);
  in.U64(~uint64_t{0});                                                   // backend offloads
  in.U64(mergeable ? ~uint64_t{0} : ~FeatureBit(net::kFeatureMrgRxbuf));  // accepted features
  // Two receive chains, one frame sent, one received.
  for (int i = 0; i < 2; ++i) {
    in.Int(1, 0, 7);  // AddRx
    in.Int(1, 1, 3);
    in.Bool(false);
    in.Int(mergeable ? 1024 : 2048, 0, 4096);
  }
  in.Int(0, 0, 7);  // AddTx
  in.Int(2, 1, 3);
  in.Bool(false);
  net::Header out{net::kHdrFlagNeedsCsum, 0, 0, 0, 34, 16, 0};
  in.Front(&out, sizeof(out));
  in.Bool(true);
  in.Int(98, 0, 1600);
  in.Int(12, 0, 110);  // the header alone in the first descriptor
  in.U8(0);
  in.U8(0);
  in.Int(2, 0, 7);  // a frame from the network
  net::Header got{net::kHdrFlagDataValid, 0, 0, 0, 0, 0, 0};
  in.Front(&got, sizeof(got));
  in.Bool(true);
  in.Int(1514, 0, 1600);
  in.Int(6, 0, 7);  // run the loop
  in.Int(7, 0, 7);  // collect used entries
  return in.Build();
}

// --- qcow2_image_fuzzer: an I/O program after the image ---

Bytes Qcow2Program(const Bytes& image) {
  FdpInput in;
  in.Front(image.data(), image.size());
  struct Op {
    uint8_t kind;
    bool from_end;
    uint32_t offset, length;
    uint8_t fill;
  };
  const Op ops[] = {
      {0, false, 0, 8192, 0},         // read across the first clusters (L2, backing)
      {1, false, 4096, 12288, 0xab},  // allocating write
      {1, false, 6144, 512, 0xcd},    // partial rewrite (COPIED or copy-on-write)
      {4, false, 0, 1 << 20, 0},      // block status
      {3, false, 65536, 65536, 1},    // write zeroes, unmap
      {2, false, 8192, 4096, 0},      // discard
      {6, false, 131072, 0, 0x11},    // a compressed cluster
      {0, true, 0, 4096, 0},          // read the last page
      {8, false, 1 << 20, 0, 0},      // grow by 1 MiB
      {5, false, 0, 0, 0},            // flush
  };
  in.Int(std::size(ops), 0, 12);
  for (const Op& op : ops) {
    in.Int(op.kind, 0, 8);
    in.Bool(op.from_end);
    in.U32(op.offset);
    in.U32(op.length);
    in.U8(op.fill);
  }
  in.U8(0x3f);  // snapshots: apply, delete, create, check with repair; info as JSON, chain
  return in.Build();
}

// --- vsock_fuzzer and virtio_balloon_fuzzer: a chain's readable bytes in pieces ---

// fuzz_iovecs.h ConsumeIovecs(in, 16, 128): the piece count, each piece's length but the
// last's, then the bytes.
void Pieces(FdpInput& in, const Bytes& stream, const std::vector<size_t>& lengths) {
  in.Int(lengths.size() + 1, 1, 16);
  for (size_t n : lengths) in.Int(n, 0, 128);
  in.Front(stream.data(), stream.size());
}

Bytes VsockSeed(uint16_t op, const std::string& payload, const std::vector<size_t>& lengths) {
  namespace vsock = kite::virtio::vsock;
  FdpInput in;
  in.Int(3, 3, 0xfffffffe);  // the guest CID
  vsock::Header h{};         // from the guest's port 1024 to the host's port 5000
  h.src_cid = 3;
  h.dst_cid = vsock::kHostCid;
  h.src_port = 1024;
  h.dst_port = 5000;
  h.type = vsock::kTypeStream;
  h.op = op;
  h.len = static_cast<uint32_t>(payload.size());
  h.buf_alloc = 256 * 1024;
  Bytes stream(reinterpret_cast<const uint8_t*>(&h), reinterpret_cast<const uint8_t*>(&h + 1));
  stream.insert(stream.end(), payload.begin(), payload.end());
  Pieces(in, stream, lengths);
  return in.Build();
}

// PFNs in and around the fuzzer's guest RAM, then stats entries: both parsers read the same
// bytes, so one seed of each shape.
Bytes BalloonSeed(bool stats, uint32_t max_pfns, uint32_t max_entries,
                  const std::vector<size_t>& lengths) {
  namespace balloon = kite::virtio::balloon;
  using kite::virtio::FeatureBit;
  FdpInput in;
  in.U64(FeatureBit(balloon::kFeatureStatsVq) | FeatureBit(balloon::kFeatureReporting));
  in.Int(max_pfns, 0, 4096);
  in.Int(max_entries, 0, 256);
  in.Int(2, 0, 8);  // stale PFNs in the vector
  in.Bool(false);
  Bytes stream;
  auto put = [&stream](const void* p, size_t n) {
    stream.insert(stream.end(), static_cast<const uint8_t*>(p), static_cast<const uint8_t*>(p) + n);
  };
  if (stats) {
    // swap in, swap out, free, total, a tag given twice, and one beyond kStatTags.
    const std::pair<uint16_t, uint64_t> entries[] = {{0, 4096},    {1, 8192},    {4, 1 << 20},
                                                     {5, 1 << 28}, {4, 2 << 20}, {40, 7}};
    for (const auto& [tag, value] : entries) {
      put(&tag, sizeof(tag));
      put(&value, sizeof(value));
    }
  } else {
    const uint32_t pfns[] = {0, 1, 2, 15, 16, 256, 263, 264, 0xfffffffc, 0xffffffff};
    put(pfns, sizeof(pfns));
    stream.push_back(0xab);  // a trailing byte
  }
  Pieces(in, stream, lengths);
  return in.Build();
}

// vsock_device_fuzzer: a guest CID, then steps (0 a tx packet: pieces, length, bytes; 1 an rx
// buffer: its length; 2 an rx kick; 3 an event-loop turn).
Bytes VsockDeviceSeed(bool small_buffers) {
  namespace vsock = kite::virtio::vsock;
  FdpInput in;
  in.Int(3, 3, 0xfffffffe);
  auto send = [&in](uint16_t op, uint64_t src_cid, uint64_t dst_cid, const std::string& data,
                    uint64_t pieces) {
    vsock::Header h{};
    h.src_cid = src_cid;
    h.dst_cid = dst_cid;
    h.src_port = 1024;
    h.dst_port = 5000;
    h.type = vsock::kTypeStream;
    h.op = op;
    h.len = static_cast<uint32_t>(data.size());
    h.buf_alloc = 256 * 1024;
    Bytes bytes(reinterpret_cast<const uint8_t*>(&h), reinterpret_cast<const uint8_t*>(&h + 1));
    bytes.insert(bytes.end(), data.begin(), data.end());
    in.Int(0, 0, 3);
    in.Int(pieces, 1, 3);
    in.Int(bytes.size(), 0, 96);
    in.Front(bytes.data(), bytes.size());
  };
  auto give = [&in](uint32_t len) {
    in.Int(1, 0, 3);
    in.Int(len, 0, 96);
  };
  send(vsock::kOpRequest, 3, vsock::kHostCid, "", 1);  // no listener: RST
  give(small_buffers ? 20 : 60);
  in.Int(2, 0, 3);
  in.Int(3, 0, 3);
  send(vsock::kOpRw, 3, vsock::kHostCid, "hello", 3);  // no connection: RST
  send(vsock::kOpRequest, 7, vsock::kHostCid, "", 2);  // foreign src_cid: dropped
  send(vsock::kOpRst, 3, vsock::kHostCid, "", 1);      // an RST: never answered
  send(vsock::kOpRequest, 3, 9, "", 2);                // not to the host: RST from CID 9
  give(60);
  give(small_buffers ? 43 : 44);
  in.Int(3, 0, 3);
  return in.Build();
}
}  // namespace

int main(int argc, char** argv) {
  if (argc == 4 && std::string(argv[1]) == "--qcow2-program") {
    std::ifstream f(argv[2], std::ios::binary);
    Bytes image((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    if (image.empty()) return 1;
    Write(argv[3], Qcow2Program(image));
    return 0;
  }
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_seeds DIR | make_seeds --qcow2-program IN OUT\n");
    return 2;
  }
  fs::path dir = argv[1];
  Write(dir / "kernel_loader_fuzzer/elf64.bin", Elf(false));
  Write(dir / "kernel_loader_fuzzer/elf-pvh.bin", Elf(true));
  Write(dir / "kernel_loader_fuzzer/bzimage.bin", BzImage());
  Configs(dir / "config_json_fuzzer");
  WriteText(dir / "snapshot_state_fuzzer/body.json", StateBody());
  const char* kinds[] = {"rng", "blk", "blk-ro", "net"};
  for (uint8_t kind = 0; kind < 4; ++kind) {
    Write(dir / "virtio_mmio_fuzzer" / (std::string(kinds[kind]) + ".bin"), MmioSeed(kind));
  }
  for (uint8_t kind = 0; kind < 4; ++kind) {
    Write(dir / "virtio_pci_fuzzer" / (std::string(kinds[kind]) + ".bin"), PciSeed(kind, true));
    Write(dir / "virtio_pci_fuzzer" / (std::string(kinds[kind]) + "-cf8.bin"),
          PciSeed(kind, false));
  }
  Write(dir / "virtio_pci_fuzzer/hotplug.bin", PciHotplugSeed());
  Write(dir / "virtio_net_fuzzer/plain.bin", NetSeed(false, false, false));
  Write(dir / "virtio_net_fuzzer/vnet-mergeable.bin", NetSeed(true, false, true));
  Write(dir / "virtio_net_fuzzer/tap-direct.bin", NetSeed(true, true, true));
  Write(dir / "virtio_net_fuzzer/tap-direct-small.bin", NetSeed(true, true, false));
  namespace vsock = kite::virtio::vsock;
  Write(dir / "vsock_fuzzer/request.bin", VsockSeed(vsock::kOpRequest, "", {}));
  Write(dir / "vsock_fuzzer/rw-split.bin", VsockSeed(vsock::kOpRw, "hello", {44}));
  Write(dir / "vsock_fuzzer/credit-update-split.bin",
        VsockSeed(vsock::kOpCreditUpdate, "", {20, 0}));
  Write(dir / "vsock_fuzzer/shutdown-rw.bin", VsockSeed(vsock::kOpShutdown, "xy", {30, 16}));
  Write(dir / "vsock_device_fuzzer/refused.bin", VsockDeviceSeed(false));
  Write(dir / "vsock_device_fuzzer/small-buffers.bin", VsockDeviceSeed(true));
  Write(dir / "virtio_balloon_fuzzer/pfns.bin", BalloonSeed(false, 4096, 256, {}));
  Write(dir / "virtio_balloon_fuzzer/pfns-split.bin", BalloonSeed(false, 4, 2, {6, 0, 17}));
  Write(dir / "virtio_balloon_fuzzer/stats.bin", BalloonSeed(true, 4096, 256, {}));
  Write(dir / "virtio_balloon_fuzzer/stats-split.bin", BalloonSeed(true, 4096, 3, {15, 10}));
  return 0;
}
