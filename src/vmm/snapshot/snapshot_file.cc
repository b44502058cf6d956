// The snapshot state file container: encoding, checks, reading and writing. See
// snapshot_file.h and docs/SNAPSHOTS.md.
#include "vmm/snapshot/snapshot_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "base/unique_fd.h"
#include "vmm/snapshot/crc64.h"

namespace kite::snapshot {
namespace {

using json = nlohmann::json;

void PutLe(std::string& out, uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

uint64_t GetLe(std::span<const uint8_t> in, size_t offset, int bytes) {
  uint64_t value = 0;
  for (int i = 0; i < bytes; ++i) value |= uint64_t{in[offset + i]} << (8 * i);
  return value;
}

// Refuses JSON text nested deeper than kMaxJsonDepth before the parser sees it.
bool DepthWithinBound(std::string_view text) {
  int depth = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxJsonDepth) return false;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return true;
}

}  // namespace

std::string EncodeStateFile(const json& body) {
  // Never throws: strings that are not UTF-8 are written with U+FFFD in their place.
  std::string text = body.dump(-1, ' ', false, json::error_handler_t::replace);
  std::string out(kStateMagic, sizeof(kStateMagic));
  PutLe(out, kFormatMajor, 2);
  PutLe(out, kFormatMinor, 2);
  PutLe(out, text.size(), 8);
  out += text;
  uint64_t crc = Crc64({reinterpret_cast<const uint8_t*>(out.data()), out.size()});
  PutLe(out, crc, 8);
  return out;
}

Result<json> DecodeStateFile(std::span<const uint8_t> bytes, std::string_view name) {
  const std::string who = "snapshot state " + std::string(name) + ": ";
  if (bytes.size() < kStateHeaderSize + kStateCrcSize) {
    return Err(who + "file too short to contain a header and CRC (" + std::to_string(bytes.size()) +
               " bytes)");
  }
  if (std::memcmp(bytes.data(), kStateMagic, sizeof(kStateMagic)) != 0) {
    return Err(who + "not a kite snapshot state file (bad magic)");
  }
  auto major = static_cast<uint16_t>(GetLe(bytes, 8, 2));
  auto minor = static_cast<uint16_t>(GetLe(bytes, 10, 2));
  std::string version = std::to_string(major) + "." + std::to_string(minor);
  std::string supported = std::to_string(kFormatMajor) + "." + std::to_string(kFormatMinor);
  if (major != kFormatMajor || minor > kFormatMinor) {
    return Err(who + "format version " + version + " is not supported (this kite reads " +
               std::to_string(kFormatMajor) + ".0 to " + supported + ")");
  }
  uint64_t body_len = GetLe(bytes, 12, 8);
  uint64_t expected = bytes.size() - kStateHeaderSize - kStateCrcSize;
  if (body_len != expected) {
    return Err(who + "body length " + std::to_string(body_len) + " does not match the file (" +
               std::to_string(expected) + " bytes): truncated or corrupt");
  }
  size_t crc_offset = bytes.size() - kStateCrcSize;
  uint64_t stored = GetLe(bytes, crc_offset, 8);
  if (Crc64(bytes.first(crc_offset)) != stored) return Err(who + "CRC mismatch: corrupt file");

  std::string_view text(reinterpret_cast<const char*>(bytes.data() + kStateHeaderSize),
                        static_cast<size_t>(body_len));
  if (!DepthWithinBound(text)) {
    return Err(who + "JSON nested deeper than " + std::to_string(kMaxJsonDepth) + " levels");
  }
  json body = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) return Err(who + "the body is not valid JSON");
  if (!body.is_object()) return Err(who + "the body is not a JSON object");
  return body;
}

Result<void> WriteNewFile(int dirfd, const char* name, std::string_view data) {
  UniqueFd fd(::openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) return SysErr(std::string("creating ") + name);
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd.get(), data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return SysErr(std::string("writing ") + name, n < 0 ? errno : EIO);
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd.get()) < 0) return SysErr(std::string("fsync of ") + name);
  return {};
}

Result<void> WriteStateFile(int dirfd, const json& body) {
  return WriteNewFile(dirfd, kStateFileName, EncodeStateFile(body));
}

Result<json> ReadStateFile(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  if (!fd) return SysErr("opening snapshot state " + path);
  struct stat st;
  if (::fstat(fd.get(), &st) < 0) return SysErr("stat of snapshot state " + path);
  if (!S_ISREG(st.st_mode)) return Err("snapshot state " + path + ": not a regular file");
  if (static_cast<uint64_t>(st.st_size) > kMaxStateFileSize) {
    return Err("snapshot state " + path + ": larger than " +
               std::to_string(kMaxStateFileSize >> 20) + " MiB");
  }
  std::string bytes(static_cast<size_t>(st.st_size), '\0');
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::read(fd.get(), bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return SysErr("reading snapshot state " + path);
    if (n == 0) break;  // shrank under us: the length checks refuse it
    done += static_cast<size_t>(n);
  }
  bytes.resize(done);
  return DecodeStateFile({reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()}, path);
}

}  // namespace kite::snapshot
