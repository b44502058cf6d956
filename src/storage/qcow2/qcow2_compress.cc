// Compressed cluster codecs: zlib raw deflate and zstd, bounded to one cluster.
#include "storage/qcow2/qcow2_compress.h"

#include <zlib.h>
#include <zstd.h>

namespace kite::storage::qcow2 {
namespace {

Result<void> Inflate(std::span<const uint8_t> in, std::span<uint8_t> out) {
  z_stream z{};
  if (inflateInit2(&z, -12) != Z_OK) return Err("inflateInit2 failed");
  z.next_in = const_cast<uint8_t*>(in.data());
  z.avail_in = static_cast<uInt>(in.size());
  z.next_out = out.data();
  z.avail_out = static_cast<uInt>(out.size());
  int ret = inflate(&z, Z_FINISH);
  uint64_t produced = out.size() - z.avail_out;
  inflateEnd(&z);
  // QEMU accepts a stream that fills the cluster exactly, ended or not (trailing sector slack).
  if ((ret == Z_STREAM_END || ret == Z_BUF_ERROR || ret == Z_OK) && produced == out.size()) {
    return {};
  }
  return Err("compressed cluster: deflate stream is corrupt or shorter than a cluster");
}

Result<void> ZstdDecompress(std::span<const uint8_t> in, std::span<uint8_t> out) {
  ZSTD_DCtx* ctx = ZSTD_createDCtx();
  if (ctx == nullptr) return Err("ZSTD_createDCtx failed");
  ZSTD_inBuffer ib{in.data(), in.size(), 0};
  ZSTD_outBuffer ob{out.data(), out.size(), 0};
  // Streaming, so the output buffer bounds what a bomb can produce.
  size_t ret = 0;
  while (ob.pos < ob.size) {
    ret = ZSTD_decompressStream(ctx, &ob, &ib);
    if (ZSTD_isError(ret)) break;
    if (ret == 0 || ib.pos == ib.size) break;
  }
  ZSTD_freeDCtx(ctx);
  if (ZSTD_isError(ret) || ob.pos != ob.size) {
    return Err("compressed cluster: zstd stream is corrupt or shorter than a cluster");
  }
  return {};
}

}  // namespace

Result<void> DecompressCluster(CompressionType type, std::span<const uint8_t> in,
                               std::span<uint8_t> out) {
  return type == CompressionType::kZstd ? ZstdDecompress(in, out) : Inflate(in, out);
}

Result<std::vector<uint8_t>> CompressCluster(CompressionType type, std::span<const uint8_t> in) {
  std::vector<uint8_t> out(in.size());
  if (type == CompressionType::kZstd) {
    size_t n = ZSTD_compress(out.data(), out.size(), in.data(), in.size(), 3);
    if (ZSTD_isError(n) || n >= in.size()) return std::vector<uint8_t>{};
    out.resize(n);
    return out;
  }
  z_stream z{};
  if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -12, 9, Z_DEFAULT_STRATEGY) != Z_OK) {
    return Err("deflateInit2 failed");
  }
  z.next_in = const_cast<uint8_t*>(in.data());
  z.avail_in = static_cast<uInt>(in.size());
  z.next_out = out.data();
  z.avail_out = static_cast<uInt>(out.size());
  int ret = deflate(&z, Z_FINISH);
  size_t n = out.size() - z.avail_out;
  deflateEnd(&z);
  if (ret != Z_STREAM_END || n >= in.size()) return std::vector<uint8_t>{};
  out.resize(n);
  return out;
}

}  // namespace kite::storage::qcow2
