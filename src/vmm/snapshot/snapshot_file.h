// The snapshot state file: a versioned, checksummed container around one JSON object.
// docs/SNAPSHOTS.md "Format" is the reference; in short (all integers little-endian):
//
//   offset 0   "KITESNAP"        8 bytes
//          8   major  u16        a reader refuses any other major
//         10   minor  u16        ... and a newer minor than it knows
//         12   body length u64   == file size - 20 - 8
//         20   body              UTF-8 JSON text, one object
//   size - 8   CRC-64/XZ u64     over every byte before it (crc64.h)
//
// Loading checks length, magic, version, body length and CRC before it parses anything, then
// parses without exceptions under a nesting-depth bound. Errors name the file.
//
//   TRY(WriteStateFile(dirfd, body));                                    // "state", fsynced
//   nlohmann::json body = TRY(ReadStateFile(dir + "/" + kStateFileName));
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <string_view>

#include "base/result.h"

namespace kite::snapshot {

// The files of a snapshot directory; nothing else may be in one.
inline constexpr const char* kStateFileName = "state";
inline constexpr const char* kMemoryFileName = "memory";
inline constexpr const char* kConfigFileName = "config.json";

inline constexpr char kStateMagic[8] = {'K', 'I', 'T', 'E', 'S', 'N', 'A', 'P'};
inline constexpr uint16_t kFormatMajor = 1;
inline constexpr uint16_t kFormatMinor = 0;
inline constexpr size_t kStateHeaderSize = 20;  // magic, major, minor, body length
inline constexpr size_t kStateCrcSize = 8;
inline constexpr uint64_t kMaxStateFileSize = 64ull << 20;
inline constexpr int kMaxJsonDepth = 64;

// The whole file for `body` (which should be an object), with the current version.
std::string EncodeStateFile(const nlohmann::json& body);
// Checks and parses a state file's bytes; `name` (the path) goes into every message.
Result<nlohmann::json> DecodeStateFile(std::span<const uint8_t> bytes, std::string_view name);

// Creates kStateFileName in the directory `dirfd` (it must not exist), writes and fsyncs it.
Result<void> WriteStateFile(int dirfd, const nlohmann::json& body);
// Reads (at most kMaxStateFileSize bytes) and decodes the state file at `path`.
Result<nlohmann::json> ReadStateFile(const std::string& path);

// Creates `name` in `dirfd` (O_EXCL, mode 0600), writes `data` and fsyncs it.
Result<void> WriteNewFile(int dirfd, const char* name, std::string_view data);

}  // namespace kite::snapshot
