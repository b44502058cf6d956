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

// One compressor state and output buffer per thread, reset for every cluster: a fresh state
// per cluster costs ~270 KiB of allocation (zlib with memLevel 9) and the buffer another
// cluster, and with several compressing threads the page faults and unmaps of that churn
// serialise them. A reset stream compresses exactly as a new one.
struct ThreadCompressors {
  std::vector<uint8_t> scratch;
  z_stream deflate{};
  bool deflate_ready = false;
  ZSTD_CCtx* zstd = nullptr;
  ~ThreadCompressors() {
    if (deflate_ready) deflateEnd(&deflate);
    ZSTD_freeCCtx(zstd);
  }
};
thread_local ThreadCompressors compressors;

Result<z_stream*> ThreadDeflate() {
  z_stream* z = &compressors.deflate;
  if (compressors.deflate_ready) {
    if (deflateReset(z) != Z_OK) return Err("deflateReset failed");
    return z;
  }
  if (deflateInit2(z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -12, 9, Z_DEFAULT_STRATEGY) != Z_OK) {
    return Err("deflateInit2 failed");
  }
  compressors.deflate_ready = true;
  return z;
}

Result<ZSTD_CCtx*> ThreadZstd() {
  if (compressors.zstd == nullptr) compressors.zstd = ZSTD_createCCtx();
  if (compressors.zstd == nullptr) return Err("ZSTD_createCCtx failed");
  return compressors.zstd;
}

}  // namespace

Result<void> DecompressCluster(CompressionType type, std::span<const uint8_t> in,
                               std::span<uint8_t> out) {
  return type == CompressionType::kZstd ? ZstdDecompress(in, out) : Inflate(in, out);
}

Result<std::vector<uint8_t>> CompressCluster(CompressionType type, std::span<const uint8_t> in) {
  std::vector<uint8_t>& scratch = compressors.scratch;  // the stream, at most a cluster
  if (scratch.size() < in.size()) scratch.resize(in.size());
  size_t n = 0;
  if (type == CompressionType::kZstd) {
    ZSTD_CCtx* ctx = TRY(ThreadZstd());
    n = ZSTD_compressCCtx(ctx, scratch.data(), in.size(), in.data(), in.size(), 3);
    if (ZSTD_isError(n)) return std::vector<uint8_t>{};
  } else {
    z_stream* z = TRY(ThreadDeflate());
    z->next_in = const_cast<uint8_t*>(in.data());
    z->avail_in = static_cast<uInt>(in.size());
    z->next_out = scratch.data();
    z->avail_out = static_cast<uInt>(in.size());
    if (deflate(z, Z_FINISH) != Z_STREAM_END) return std::vector<uint8_t>{};
    n = in.size() - z->avail_out;
  }
  if (n >= in.size()) return std::vector<uint8_t>{};
  return std::vector<uint8_t>(scratch.begin(), scratch.begin() + n);
}

}  // namespace kite::storage::qcow2
