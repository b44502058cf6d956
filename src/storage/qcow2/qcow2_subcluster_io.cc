// Qcow2Image over extended L2 entries: reading a cluster whose subclusters differ (kMixed), and
// the in-place write that fills its unallocated and zero subclusters (qcow2_subcluster.h).
#include "storage/qcow2/qcow2_image.h"
#include "storage/qcow2/qcow2_subcluster.h"

namespace kite::storage::qcow2 {

Result<void> Qcow2Image::ReadSubclusters(const Mapping& m, uint64_t offset,
                                         std::span<const iovec> iov) {
  uint64_t cs = meta_->cluster_size(), len = IovLength(iov);
  for (uint64_t done = 0; done < len;) {
    SubRun r = SubclusterRun(m, (offset + done) & (cs - 1), cs);
    uint64_t n = std::min(len - done, r.length);
    TRY(ReadMapped(r.m, offset + done, SliceIov(iov, done, n)));
    done += n;
  }
  return {};
}

Result<void> Qcow2Image::FillSubclusters(uint64_t offset, std::span<const iovec> iov,
                                         const Mapping& m) {
  uint64_t cs = meta_->cluster_size();
  uint64_t start = offset & ~(cs - 1), head = offset - start;
  uint64_t valid = std::min(cs, size_ - start);
  TRY(meta_->CheckDataWrite(m.host));
  // What the unallocated and zero subclusters read as now, with the write laid over it. Past
  // the disk's end (its last cluster) the buffer stays zero.
  std::vector<uint8_t> buf(cs, 0);
  for (uint64_t in = 0; in < valid;) {
    SubRun r = SubclusterRun(m, in, cs);
    if (r.m.kind != Mapping::kNormal) {
      iovec v{buf.data() + in, std::min(r.length, valid - in)};
      TRY(ReadMapped(r.m, start + in, {&v, 1}));
    }
    in += r.length;
  }
  CopyFromIov(iov, buf.data() + head);
  // Data first, then the bitmap (a crash leaves the old bitmap over unused bytes). Allocated
  // subclusters get only the bytes of the write: other writers may be writing them in place.
  for (uint64_t in = 0; in < cs;) {
    SubRun r = SubclusterRun(m, in, cs);
    if (r.m.kind != Mapping::kNormal) {
      TRY(data_io().Write(buf.data() + in, r.length, m.host + in));
    }
    in += r.length;
  }
  TRY(data_io().WriteV(iov, m.host + head));
  return meta_->SetL2Entry(start, m.host | kOflagCopied);
}

}  // namespace kite::storage::qcow2
