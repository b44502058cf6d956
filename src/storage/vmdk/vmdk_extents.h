// VMDK descriptor files: a text descriptor naming one or more extent files, as
// monolithicFlat, vmfs, twoGbMaxExtentSparse and twoGbMaxExtentFlat images are laid out
// (`d.vmdk` + `d-flat.vmdk`, or `d-f001.vmdk`..., or `d-s001.vmdk`...). The disk is the
// extents one after the other, read-only.
//
// Extent file names resolve as qemu-img resolves them: relative to the descriptor's directory
// (`..` included), absolute names as they are; every extent must be a regular file. Refused,
// naming the descriptor, the extent file and the field: a missing or unreadable extent; a flat
// extent shorter than its offset plus its size; a sparse extent whose header capacity is not
// the descriptor's extent size. The disk size is the sum of the extent sizes.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "base/result.h"
#include "base/unique_fd.h"
#include "storage/disk_image.h"

namespace kite::storage {

// Opens the descriptor file `path` (open as `fd`, which the image keeps: its lock lasts as
// long) whose text is `text` (already read, at most 1 MiB). The image's extra_files() are the
// extent files.
Result<std::unique_ptr<DiskImage>> OpenVmdkDescriptorFile(const std::string& path, UniqueFd fd,
                                                          std::string_view text);

// One hosted sparse extent file (KDMV header, its own grain directory), without checking an
// embedded descriptor: a part of a twoGbMaxExtentSparse image (vmdk_image.cc).
Result<std::unique_ptr<DiskImage>> OpenVmdkSparseExtent(const std::string& path);

}  // namespace kite::storage
