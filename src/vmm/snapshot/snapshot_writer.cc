// Atomic creation and replacement of snapshot directories. See snapshot_writer.h and
// docs/SNAPSHOTS.md "Atomicity and crashes".
#include "vmm/snapshot/snapshot_writer.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "base/log.h"
#include "base/units.h"
#include "vmm/snapshot/snapshot_file.h"

namespace kite::snapshot {
namespace {

constexpr const char* kSnapshotFiles[] = {kStateFileName, kMemoryFileName, kConfigFileName};

bool IsSnapshotFile(const std::string& name) {
  for (const char* f : kSnapshotFiles) {
    if (name == f) return true;
  }
  return false;
}

std::string JoinPath(const std::string& dir, const std::string& name) {
  return dir == "/" ? "/" + name : dir + "/" + name;
}

Result<std::string> RealPath(const std::string& path) {
  char* resolved = ::realpath(path.c_str(), nullptr);
  if (resolved == nullptr) return SysErr("resolving " + path);
  std::string out(resolved);
  std::free(resolved);
  return out;
}

// Splits the target into its resolved folder and last component (symlinks followed).
Result<std::pair<std::string, std::string>> ResolveTarget(std::string dir) {
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  if (dir.empty()) return Err("no snapshot directory given");
  struct stat st;
  if (::lstat(dir.c_str(), &st) == 0)
    dir = TRY(RealPath(dir));
  else if (errno != ENOENT)
    return SysErr("snapshot directory " + dir);
  std::filesystem::path path(dir);
  std::string name = path.filename().string();
  if (name.empty() || name == "." || name == ".." || dir == "/") {
    return Err("'" + dir + "' cannot be a snapshot directory (give a folder name)");
  }
  std::string parent = path.parent_path().string();
  parent = TRY(RealPath(parent.empty() ? "." : parent));
  return std::make_pair(parent, name);
}

std::string RandomSuffix() {
  uint64_t value = 0;
  if (::getrandom(&value, sizeof(value), GRND_NONBLOCK) != sizeof(value)) {
    value = static_cast<uint64_t>(::time(nullptr)) ^ reinterpret_cast<uintptr_t>(&value);
  }
  return ToHex(value);
}

// "<pid>-<random>" after the prefix: the pid, or 0 when the name does not match.
pid_t PartialOwner(const std::string& rest) {
  size_t dash = rest.find('-');
  if (dash == 0 || dash == std::string::npos || dash > 9 || dash + 1 == rest.size()) return 0;
  pid_t pid = 0;
  for (size_t i = 0; i < dash; ++i) {
    if (rest[i] < '0' || rest[i] > '9') return 0;
    pid = pid * 10 + (rest[i] - '0');
  }
  return pid;
}

// Removes DIR.partial-<pid>-* directories whose process is gone (a crash mid-save).
void RemoveStalePartials(int parent_fd, const std::string& name) {
  int fd = ::openat(parent_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  DIR* d = ::fdopendir(fd);
  if (d == nullptr) {
    ::close(fd);
    return;
  }
  const std::string prefix = name + ".partial-";
  std::vector<std::string> stale;
  while (dirent* e = ::readdir(d)) {
    std::string entry = e->d_name;
    if (entry.rfind(prefix, 0) != 0) continue;
    pid_t pid = PartialOwner(entry.substr(prefix.size()));
    if (pid <= 0 || pid == ::getpid()) continue;
    if (::kill(pid, 0) < 0 && errno == ESRCH) stale.push_back(entry);
  }
  ::closedir(d);
  for (const std::string& entry : stale) {
    if (auto removed = RemoveSnapshotDir(parent_fd, entry); !removed) {
      KITE_LOG(Warn, "snapshot: leaving stale %s: %s", entry.c_str(),
               removed.error().message().c_str());
    }
  }
}

}  // namespace

Result<void> RemoveSnapshotDir(int parent_fd, const std::string& name) {
  int fd = ::openat(parent_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return SysErr("opening " + name);
  UniqueFd dir(fd);
  for (const char* f : kSnapshotFiles) {
    if (::unlinkat(dir.get(), f, 0) < 0 && errno != ENOENT) {
      return SysErr("removing " + name + "/" + f);
    }
  }
  if (::unlinkat(parent_fd, name.c_str(), AT_REMOVEDIR) < 0) return SysErr("removing " + name);
  return {};
}

Result<SnapshotWriter> SnapshotWriter::Begin(const std::string& dir,
                                             const std::vector<std::string>& forbidden_paths) {
  SnapshotWriter w;
  std::tie(w.parent_, w.name_) = TRY(ResolveTarget(dir));
  w.dir_ = JoinPath(w.parent_, w.name_);
  w.parent_fd_.Reset(::open(w.parent_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!w.parent_fd_) return SysErr("opening " + w.parent_);
  for (const std::string& path : forbidden_paths) {
    struct stat st;
    if (!path.empty() && ::stat(path.c_str(), &st) == 0) {
      w.forbidden_.push_back({st.st_dev, st.st_ino, path});
    }
  }
  TRY(w.CheckExistingTarget());
  RemoveStalePartials(w.parent_fd_.get(), w.name_);

  std::string partial = w.name_ + ".partial-" + std::to_string(::getpid()) + "-" + RandomSuffix();
  if (::mkdirat(w.parent_fd_.get(), partial.c_str(), 0700) < 0) {
    return SysErr("creating " + JoinPath(w.parent_, partial));
  }
  w.partial_name_ = partial;  // from here on the destructor removes it
  w.partial_fd_.Reset(::openat(w.parent_fd_.get(), partial.c_str(),
                               O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!w.partial_fd_) return SysErr("opening " + w.partial_dir());
  return w;
}

SnapshotWriter::SnapshotWriter(SnapshotWriter&& other) noexcept
    : dir_(std::move(other.dir_)),
      parent_(std::move(other.parent_)),
      name_(std::move(other.name_)),
      partial_name_(std::exchange(other.partial_name_, {})),
      parent_fd_(std::move(other.parent_fd_)),
      partial_fd_(std::move(other.partial_fd_)),
      forbidden_(std::move(other.forbidden_)),
      wrote_memory_(other.wrote_memory_),
      wrote_config_(other.wrote_config_),
      wrote_state_(other.wrote_state_),
      committed_(other.committed_),
      replaced_old_(other.replaced_old_) {}

SnapshotWriter::~SnapshotWriter() {
  if (partial_name_.empty() || !parent_fd_) return;
  // Not committed: the partial directory. Committed by exchange: the previous snapshot, which
  // now sits at the partial name. Committed by rename: nothing is left there.
  if (committed_ && !replaced_old_) return;
  partial_fd_.Reset();
  if (auto removed = RemoveSnapshotDir(parent_fd_.get(), partial_name_); !removed) {
    KITE_LOG(Warn, "snapshot: could not remove %s: %s", partial_dir().c_str(),
             removed.error().message().c_str());
  } else if (committed_) {
    (void)::fsync(parent_fd_.get());
  }
}

std::string SnapshotWriter::partial_dir() const {
  return JoinPath(parent_, partial_name_);
}

Result<void> SnapshotWriter::CheckNotForbidden(int dirfd, const char* name,
                                               const std::string& shown) const {
  struct stat st;
  if (::fstatat(dirfd, name, &st, 0) < 0) return {};  // a dangling link: nothing to protect
  for (const FileId& f : forbidden_) {
    if (st.st_dev == f.dev && st.st_ino == f.ino) {
      return Err(shown + " is " + f.path +
                 ", which the running VM uses; a snapshot must not be written over it (choose "
                 "another directory)");
    }
  }
  return {};
}

Result<void> SnapshotWriter::CheckExistingTarget() const {
  struct stat st;
  if (::fstatat(parent_fd_.get(), name_.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0) {
    if (errno == ENOENT) return {};
    return SysErr("snapshot directory " + dir_);
  }
  const std::string refuse = "; refusing to replace it";
  if (!S_ISDIR(st.st_mode)) return Err(dir_ + " exists and is not a directory" + refuse);
  TRY(CheckNotForbidden(parent_fd_.get(), name_.c_str(), dir_));
  int fd = ::openat(parent_fd_.get(), name_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return SysErr("opening " + dir_);
  DIR* d = ::fdopendir(fd);
  if (d == nullptr) {
    ::close(fd);
    return SysErr("reading " + dir_);
  }
  Result<void> result;
  bool has_state = false, has_files = false;
  while (dirent* e = ::readdir(d)) {
    std::string entry = e->d_name;
    if (entry == "." || entry == "..") continue;
    has_files = true;
    has_state |= entry == kStateFileName;
    struct stat est;
    bool plain = ::fstatat(fd, e->d_name, &est, AT_SYMLINK_NOFOLLOW) == 0 &&
                 (S_ISREG(est.st_mode) || S_ISLNK(est.st_mode));
    if (!IsSnapshotFile(entry) || !plain) {
      result = Err(dir_ + " is not a kite snapshot (it holds '" + entry + "')" + refuse);
      break;
    }
    result = CheckNotForbidden(fd, e->d_name, JoinPath(dir_, entry));
    if (!result) break;
  }
  ::closedir(d);
  if (result && has_files && !has_state) {
    return Err(dir_ + " is not a kite snapshot (no state file)" + refuse);
  }
  return result;
}

Result<MemoryFileLayout> SnapshotWriter::WriteMemory(std::span<const MemoryRegion> regions,
                                                     MemoryWriteStats* stats) {
  if (wrote_memory_ || committed_) return Err("snapshot memory written twice");
  UniqueFd fd(::openat(partial_fd_.get(), kMemoryFileName,
                       O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) return SysErr("creating " + JoinPath(partial_dir(), kMemoryFileName));
  MemoryFileLayout layout =
      TRY_CTX(WriteMemoryFile(fd.get(), regions, stats), JoinPath(partial_dir(), kMemoryFileName));
  wrote_memory_ = true;
  return layout;
}

Result<void> SnapshotWriter::WriteConfig(const nlohmann::json& config) {
  if (wrote_config_ || committed_) return Err("snapshot config written twice");
  std::string text = config.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  TRY_CTX(WriteNewFile(partial_fd_.get(), kConfigFileName, text), partial_dir());
  wrote_config_ = true;
  return {};
}

Result<void> SnapshotWriter::WriteState(const nlohmann::json& body) {
  if (wrote_state_ || committed_) return Err("snapshot state written twice");
  TRY_CTX(WriteStateFile(partial_fd_.get(), body), partial_dir());
  wrote_state_ = true;
  return {};
}

Result<void> SnapshotWriter::Commit() {
  if (committed_) return Err("snapshot already committed");
  if (!wrote_state_ || !wrote_memory_ || !wrote_config_) {
    return Err("snapshot incomplete: state, memory and config.json must all be written");
  }
  if (::fsync(partial_fd_.get()) < 0) return SysErr("fsync of " + partial_dir());
  TRY(CheckExistingTarget());  // again: it may have changed since Begin()
  return SwapIn();
}

Result<void> SnapshotWriter::SwapIn() {
  int pfd = parent_fd_.get();
  struct stat st;
  bool exists = ::fstatat(pfd, name_.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
  if (!exists) {
    if (::renameat(pfd, partial_name_.c_str(), pfd, name_.c_str()) < 0) {
      return SysErr("moving " + partial_dir() + " to " + dir_);
    }
  } else if (::renameat2(pfd, partial_name_.c_str(), pfd, name_.c_str(), RENAME_EXCHANGE) < 0) {
    if (errno == EINVAL || errno == ENOSYS) {
      return Err("cannot replace " + dir_ +
                 " atomically: its file system does not support renameat2(RENAME_EXCHANGE), "
                 "and kite never replaces a snapshot non-atomically; save to a new directory");
    }
    return SysErr("exchanging " + partial_dir() + " with " + dir_);
  }
  committed_ = true;  // the new snapshot is at dir_; the partial name holds the old one, if any
  replaced_old_ = exists;
  if (::fsync(pfd) < 0) return SysErr("fsync of " + parent_);
  return {};
}

}  // namespace kite::snapshot
