// What the byte-stream parser fuzzers (vsock_fuzzer, virtio_balloon_fuzzer) share: a chain's
// readable part as the parsers see it (an iovec span), split at fuzzed points into pieces that
// each live in a heap block of exactly their size, so that AddressSanitizer reports a read
// past any piece, not only past the last one. Zero-length pieces are allowed (descriptors of
// length 0 are legal and must be skipped).
//
// Threads: everything on the fuzzer's thread.
#pragma once

#include <fuzzer/FuzzedDataProvider.h>
#include <sys/uio.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

namespace kite::fuzz {

struct FuzzIovecs {
  std::vector<std::unique_ptr<uint8_t[]>> blocks;
  std::vector<iovec> iov;
  std::vector<uint8_t> flat;  // the same bytes in one piece: what the checks compare against
};

// Up to `max_pieces` pieces: each but the last `max_piece` bytes at most (its length read from
// the end of the input), the last the rest of the input.
inline FuzzIovecs ConsumeIovecs(FuzzedDataProvider& in, size_t max_pieces, size_t max_piece) {
  FuzzIovecs out;
  const size_t pieces = in.ConsumeIntegralInRange<size_t>(1, max_pieces);
  std::vector<size_t> lengths;
  for (size_t i = 0; i + 1 < pieces; ++i) {
    lengths.push_back(in.ConsumeIntegralInRange<size_t>(0, max_piece));
  }
  for (size_t i = 0; i < pieces; ++i) {
    std::vector<uint8_t> bytes =
        i + 1 < pieces ? in.ConsumeBytes<uint8_t>(lengths[i]) : in.ConsumeRemainingBytes<uint8_t>();
    auto block = std::make_unique<uint8_t[]>(bytes.size());  // new uint8_t[0]: a valid block
    if (!bytes.empty()) std::memcpy(block.get(), bytes.data(), bytes.size());
    out.iov.push_back(iovec{block.get(), bytes.size()});
    out.blocks.push_back(std::move(block));
    out.flat.insert(out.flat.end(), bytes.begin(), bytes.end());
  }
  return out;
}

}  // namespace kite::fuzz
