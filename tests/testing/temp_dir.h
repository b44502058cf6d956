// TempDir: a fresh directory under $TMPDIR (or /tmp), removed with its contents at scope end.
#pragma once

#include <filesystem>
#include <string>

namespace kite::testing {

class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::string File(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

// Writes `data` to `path`, replacing it. Fails the current test on error.
void WriteFile(const std::string& path, const std::string& data);
std::string ReadFile(const std::string& path);

}  // namespace kite::testing
