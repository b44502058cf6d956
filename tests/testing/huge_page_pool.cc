#include "testing/huge_page_pool.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <fstream>

#include "testing/temp_dir.h"

namespace kite::testing {
namespace {

constexpr const char* kPoolPath = "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages";

uint64_t ReadPool() {
  return std::stoull("0" + ReadFile(kPoolPath));
}

bool WritePool(uint64_t value) {
  std::ofstream out(kPoolPath);
  out << value << "\n";
  out.close();
  return out.good() && ReadPool() == value;
}

}  // namespace

uint64_t MemInfo(const std::string& field) {
  std::ifstream in("/proc/meminfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) == 0) return std::stoull(line.substr(field.size() + 1));
  }
  return 0;
}

HugePagePool::HugePagePool(uint64_t pages) {
  lock_ = ::open("/tmp/kite-test-hugepages.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_ >= 0) ::flock(lock_, LOCK_EX);
  original_ = ReadPool();
  ok_ = WritePool(original_ + pages) && MemInfo("HugePages_Free") >= pages;
}

HugePagePool::~HugePagePool() {
  (void)WritePool(original_);
  if (lock_ >= 0) ::close(lock_);
}

}  // namespace kite::testing
