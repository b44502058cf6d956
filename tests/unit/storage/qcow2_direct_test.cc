// qcow2 with cache=none: the file (and every backing file) is really open with O_DIRECT, and
// every kind of qcow2 I/O works over it: images made by qemu-img and by kite, cluster sizes
// 512 B to 2 MiB, unaligned offsets and buffers (bounced), compressed clusters, internal
// snapshots, a backing chain, and concurrent writes to neighbouring small clusters (the
// read-modify-write of a shared 4 KiB block must not lose either write). Results are compared
// with an in-memory model and with qemu-img compare/check. Images live under the test's
// TempDir; where that filesystem refuses O_DIRECT the tests skip and say so.
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <thread>

#include "storage/qcow2/qcow2.h"
#include "storage/raw_image.h"
#include "storage_test_util.h"
#include "testing/temp_dir.h"
#include "testing/tool_required.h"

namespace kite::storage {
namespace {

using kite::testing::TempDir;
namespace t = kite::storage::testing;

constexpr uint64_t kSize = 8 << 20;

// Why O_DIRECT does not work in `dir` (empty when it does).
std::string DirectUnsupported(const TempDir& dir) {
  std::string p = dir.File("probe");
  int fd = ::open(p.c_str(), O_RDWR | O_CREAT | O_DIRECT | O_CLOEXEC, 0600);
  if (fd < 0) return "O_DIRECT open failed in " + dir.path().string() + ": " + strerror(errno);
  void* buf = nullptr;
  bool ok = ::posix_memalign(&buf, 4096, 4096) == 0;
  if (ok) std::memset(buf, 0, 4096);
  ok = ok && ::pwrite(fd, buf, 4096, 0) == 4096;
  int err = errno;
  std::free(buf);
  ::close(fd);
  ::unlink(p.c_str());
  return ok ? "" : "O_DIRECT write failed in " + dir.path().string() + ": " + strerror(err);
}

// The open flags of this process's fds on `path` (from /proc/self/fdinfo); empty: none open.
std::vector<int> OpenFlagsOf(const std::string& path) {
  std::vector<int> out;
  DIR* d = ::opendir("/proc/self/fd");
  if (d == nullptr) return out;
  while (dirent* e = ::readdir(d)) {
    char target[4096];
    std::string link = std::string("/proc/self/fd/") + e->d_name;
    ssize_t n = ::readlink(link.c_str(), target, sizeof(target) - 1);
    if (n <= 0 || std::string(target, static_cast<size_t>(n)) != path) continue;
    std::ifstream info(std::string("/proc/self/fdinfo/") + e->d_name);
    std::string key, value;
    while (info >> key >> value) {
      if (key == "flags:") out.push_back(static_cast<int>(std::strtol(value.c_str(), nullptr, 8)));
    }
  }
  ::closedir(d);
  return out;
}

std::unique_ptr<DiskImage> OpenDirect(const std::string& path, bool read_only = false) {
  OpenOptions o;
  o.cache = CacheMode::kNone;
  o.read_only = read_only;
  auto r = OpenImage(path, ImageFormat::kQcow2, o);
  EXPECT_TRUE(r) << (r ? "" : r.error().message());
  return r ? std::move(*r) : nullptr;
}

// Page-aligned memory, as guest RAM is.
class AlignedBytes {
 public:
  explicit AlignedBytes(size_t len) {
    void* p = nullptr;
    if (::posix_memalign(&p, 4096, len) != 0) std::abort();  // test memory, not input
    ptr_ = static_cast<uint8_t*>(p);
    std::memset(ptr_, 0, len);
  }
  ~AlignedBytes() { std::free(ptr_); }
  AlignedBytes(const AlignedBytes&) = delete;
  AlignedBytes& operator=(const AlignedBytes&) = delete;
  uint8_t* data() { return ptr_; }

 private:
  uint8_t* ptr_ = nullptr;
};

void WriteRaw(const std::string& path, const std::vector<uint8_t>& data) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
}

// qemu-img compare of `image` against the model, and qemu-img check.
void ExpectQemuAgrees(const std::string& image, const std::vector<uint8_t>& model) {
  KITE_REQUIRE_TOOL("qemu-img");
  std::string raw = image + ".model.raw";
  WriteRaw(raw, model);
  auto cmp = t::Run("qemu-img compare -f qcow2 -F raw '" + image + "' '" + raw + "'");
  EXPECT_EQ(cmp.exit_code, 0) << cmp.output;
  auto check = t::Run("qemu-img check '" + image + "'");
  EXPECT_EQ(check.exit_code, 0) << check.output;
  std::remove(raw.c_str());
}

// Writes a mix of aligned and unaligned requests (offsets, lengths and memory) through `img`
// and into `model`.
void MixedWrites(DiskImage& img, std::vector<uint8_t>& model, uint32_t seed) {
  struct W {
    uint64_t off, len;
  };
  const W writes[] = {{0, 4096},
                      {4096 * 3 + 512, 512},
                      {70000, 3000},
                      {1 << 20, 1 << 20},
                      {(2 << 20) - 100, 300},
                      {5 << 20, 65536 + 4096},
                      {kSize - 700, 700},
                      {12345, 1}};
  for (const W& w : writes) {
    auto data = t::Pattern(w.off, w.len, seed);
    // Aligned requests from page-aligned memory (as guest RAM) go straight to the file; the
    // others come from an unaligned buffer (one byte into a larger allocation): bounced.
    bool aligned = w.off % 4096 == 0 && w.len % 4096 == 0;
    AlignedBytes buf(w.len + 4096);
    uint8_t* src = buf.data() + (aligned ? 0 : 1);
    std::memcpy(src, data.data(), w.len);
    ASSERT_TRUE(img.Write(w.off, src, w.len)) << "write at " << w.off;
    std::memcpy(model.data() + w.off, data.data(), w.len);
  }
}

void ExpectReadsModel(DiskImage& img, const std::vector<uint8_t>& model) {
  AlignedBytes all(img.size() + 4096);
  ASSERT_TRUE(img.Read(0, all.data(), img.size()));  // aligned: direct
  ASSERT_TRUE(std::equal(model.begin(), model.end(), all.data()));
  std::memset(all.data(), 0, img.size() + 1);
  ASSERT_TRUE(img.Read(0, all.data() + 1, img.size()));  // unaligned memory: bounced
  ASSERT_TRUE(std::equal(model.begin(), model.end(), all.data() + 1));
  std::vector<uint8_t> piece(777);
  ASSERT_TRUE(img.Read(4096 * 3 + 100, piece.data(), piece.size()));  // unaligned offset
  EXPECT_TRUE(std::equal(piece.begin(), piece.end(), model.begin() + 4096 * 3 + 100));
}

class Qcow2Direct : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why = DirectUnsupported(dir_);
    if (!why.empty()) GTEST_SKIP() << why << " (no O_DIRECT-capable directory for the test)";
  }
  TempDir dir_;
};

TEST_F(Qcow2Direct, CacheNone_Qcow2FdHasODirect) {
  std::string p = dir_.File("d.qcow2");
  Qcow2CreateOptions co;
  co.size = kSize;
  ASSERT_TRUE(CreateQcow2(p, co));
  auto img = OpenDirect(p);
  ASSERT_TRUE(img);
  auto flags = OpenFlagsOf(p);
  ASSERT_EQ(flags.size(), 1u);
  EXPECT_TRUE(flags[0] & O_DIRECT) << "flags " << std::oct << flags[0];
}

TEST_F(Qcow2Direct, CacheWriteback_Qcow2FdHasNoODirect) {
  std::string p = dir_.File("d.qcow2");
  Qcow2CreateOptions co;
  co.size = kSize;
  ASSERT_TRUE(CreateQcow2(p, co));
  auto img = t::OpenForTest(p, ImageFormat::kQcow2);
  ASSERT_TRUE(img);
  auto flags = OpenFlagsOf(p);
  ASSERT_EQ(flags.size(), 1u);
  EXPECT_FALSE(flags[0] & O_DIRECT);
}

struct Layout {
  uint32_t cluster_size;
  bool by_qemu;
};

std::string LayoutName(const ::testing::TestParamInfo<Layout>& info) {
  return std::string(info.param.by_qemu ? "Qemu" : "Kite") +
         std::to_string(info.param.cluster_size);
}

class Qcow2DirectLayout : public Qcow2Direct, public ::testing::WithParamInterface<Layout> {};

TEST_P(Qcow2DirectLayout, MixedWrites_ReadBackAndQemuAgree) {
  std::string p = dir_.File("l.qcow2");
  const Layout& l = GetParam();
  if (l.by_qemu) {
    KITE_REQUIRE_TOOL("qemu-img");
    auto r =
        t::Run("qemu-img create -q -f qcow2 -o cluster_size=" + std::to_string(l.cluster_size) +
               " '" + p + "' " + std::to_string(kSize));
    ASSERT_EQ(r.exit_code, 0) << r.output;
  } else {
    Qcow2CreateOptions co;
    co.size = kSize;
    co.cluster_size = l.cluster_size;
    ASSERT_TRUE(CreateQcow2(p, co));
  }
  std::vector<uint8_t> model(kSize, 0);
  {
    auto img = OpenDirect(p);
    ASSERT_TRUE(img);
    MixedWrites(*img, model, 1);
    MixedWrites(*img, model, 2);  // again: in place now
    ASSERT_TRUE(img->Flush());
    ExpectReadsModel(*img, model);
  }
  auto img = OpenDirect(p, true);  // reopened: everything came from the file
  ASSERT_TRUE(img);
  ExpectReadsModel(*img, model);
  img.reset();
  ExpectQemuAgrees(p, model);
}

INSTANTIATE_TEST_SUITE_P(Clusters, Qcow2DirectLayout,
                         ::testing::Values(Layout{512, false}, Layout{4096, false},
                                           Layout{65536, false}, Layout{2 << 20, false},
                                           Layout{512, true}, Layout{4096, true},
                                           Layout{65536, true}, Layout{2 << 20, true}),
                         LayoutName);

TEST_F(Qcow2Direct, CompressedClusters_ReadAndOverwrite) {
  KITE_REQUIRE_TOOL("qemu-img");
  std::vector<uint8_t> model(kSize, 0);
  for (uint64_t off = 0; off < kSize; off += 65536) {  // compressible: half zeros, half pattern
    auto d = t::Pattern(off, 32768, 7);
    std::memcpy(model.data() + off, d.data(), d.size());
  }
  std::string raw = dir_.File("src.raw"), p = dir_.File("c.qcow2");
  WriteRaw(raw, model);
  auto r = t::Run("qemu-img convert -q -c -f raw -O qcow2 -o cluster_size=4096 '" + raw + "' '" +
                  p + "'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto img = OpenDirect(p);
  ASSERT_TRUE(img);
  ExpectReadsModel(*img, model);
  MixedWrites(*img, model, 3);  // copy-on-write out of compressed clusters
  ExpectReadsModel(*img, model);
  img.reset();
  ExpectQemuAgrees(p, model);
}

TEST_F(Qcow2Direct, KiteCompressedWrite_ReadsBack) {
  std::string p = dir_.File("kc.qcow2");
  Qcow2CreateOptions co;
  co.size = kSize;
  co.cluster_size = 65536;
  ASSERT_TRUE(CreateQcow2(p, co));
  std::vector<uint8_t> model(kSize, 0);
  auto img = OpenDirect(p);
  ASSERT_TRUE(img);
  for (uint64_t c = 0; c < 4; ++c) {  // packed streams share sectors: sub-block writes
    std::vector<uint8_t> cluster(65536, static_cast<uint8_t>(c + 1));
    auto d = t::Pattern(c * 65536, 1000, 9);
    std::memcpy(cluster.data(), d.data(), d.size());
    ASSERT_TRUE(WriteCompressedCluster(*img, c * 65536, cluster));
    std::memcpy(model.data() + c * 65536, cluster.data(), cluster.size());
  }
  ExpectReadsModel(*img, model);
  img.reset();
  ExpectQemuAgrees(p, model);
}

TEST_F(Qcow2Direct, Snapshot_WritesCopyAndSnapshotKept) {
  std::string p = dir_.File("s.qcow2");
  Qcow2CreateOptions co;
  co.size = kSize;
  co.cluster_size = 4096;
  ASSERT_TRUE(CreateQcow2(p, co));
  std::vector<uint8_t> model(kSize, 0);
  {
    auto img = OpenDirect(p);
    ASSERT_TRUE(img);
    MixedWrites(*img, model, 4);
  }
  ASSERT_TRUE(CreateSnapshot(p, "s1"));
  std::vector<uint8_t> at_snapshot = model;
  {
    auto img = OpenDirect(p);  // reads the snapshot table over O_DIRECT
    ASSERT_TRUE(img);
    MixedWrites(*img, model, 5);  // shared clusters and L2 tables: copied
    ExpectReadsModel(*img, model);
  }
  ExpectQemuAgrees(p, model);
  KITE_REQUIRE_TOOL("qemu-img");
  std::string out = dir_.File("s1.raw");
  auto r =
      t::Run("qemu-img convert -U -l snapshot.name=s1 -f qcow2 -O raw '" + p + "' '" + out + "'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::string got = kite::testing::ReadFile(out);
  EXPECT_TRUE(got.size() == at_snapshot.size() &&
              std::memcmp(got.data(), at_snapshot.data(), got.size()) == 0)
      << "the snapshot changed";
}

TEST_F(Qcow2Direct, BackingChain_BackingAlsoODirect_CowCorrect) {
  std::vector<uint8_t> model = t::Pattern(0, kSize, 11);
  std::string base = dir_.File("base.raw"), mid = dir_.File("mid.qcow2");
  std::string top = dir_.File("top.qcow2");
  WriteRaw(base, model);
  Qcow2CreateOptions co;
  co.size = kSize;
  co.backing_file = "base.raw";
  co.backing_format = "raw";
  ASSERT_TRUE(CreateQcow2(mid, co));
  {
    auto img = OpenDirect(mid);
    ASSERT_TRUE(img);
    MixedWrites(*img, model, 12);  // partial clusters: copied from the raw base
  }
  co.backing_file = "mid.qcow2";
  co.backing_format = "qcow2";
  co.cluster_size = 4096;
  ASSERT_TRUE(CreateQcow2(top, co));
  auto img = OpenDirect(top);
  ASSERT_TRUE(img);
  for (const std::string& f : {base, mid, top}) {
    auto flags = OpenFlagsOf(f);
    ASSERT_EQ(flags.size(), 1u) << f;
    EXPECT_TRUE(flags[0] & O_DIRECT) << f << " is open without O_DIRECT";
  }
  MixedWrites(*img, model, 13);
  ExpectReadsModel(*img, model);
  img.reset();
  ExpectQemuAgrees(top, model);
}

TEST_F(Qcow2Direct, SmallClusters_ConcurrentNeighbourWrites_NoneLost) {
  // 512 B clusters: eight clusters share each 4 KiB block, and writes to clusters the image
  // owns run in parallel, each a read-modify-write of the shared block.
  std::string p = dir_.File("n.qcow2");
  Qcow2CreateOptions co;
  co.size = 256 << 10;
  co.cluster_size = 512;
  ASSERT_TRUE(CreateQcow2(p, co));
  auto img = OpenDirect(p);
  ASSERT_TRUE(img);
  std::vector<uint8_t> zeros(co.size, 0);
  ASSERT_TRUE(img->Write(0, zeros.data(), zeros.size()));  // allocate every cluster first
  constexpr int kThreads = 4;
  std::vector<std::thread> threads;
  constexpr int kRounds = 5;
  for (int index = 0; index < kThreads; ++index) {
    threads.emplace_back([&, index] {
      for (int round = 0; round < kRounds; ++round) {
        for (uint64_t c = static_cast<uint64_t>(index); c < co.size / 512; c += kThreads) {
          auto d = t::Pattern(c * 512 + 1, 510, static_cast<uint32_t>(round));
          ASSERT_TRUE(img->Write(c * 512 + 1, d.data(), d.size()));
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  std::vector<uint8_t> model(co.size, 0);
  for (uint64_t c = 0; c < co.size / 512; ++c) {
    auto d = t::Pattern(c * 512 + 1, 510, kRounds - 1);
    std::memcpy(model.data() + c * 512 + 1, d.data(), d.size());
  }
  ExpectReadsModel(*img, model);
}

}  // namespace
}  // namespace kite::storage
