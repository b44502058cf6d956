// What `kite-img create` (and `convert -O`) will make: the output format and its creation
// options, built from -f/-o/-b/-F/size by a pure function, and the "Formatting ..." line
// qemu-img prints for it.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "storage/disk_image.h"
#include "storage/img/vmdk_writer.h"
#include "storage/qcow2/qcow2.h"

namespace kite::img {

struct CreateSpec {
  storage::ImageFormat format = storage::ImageFormat::kRaw;
  uint64_t size = 0;  // 0 with a backing file: take the backing file's size
  bool size_given = false;
  storage::Preallocation preallocation = storage::Preallocation::kOff;
  storage::Qcow2CreateOptions qcow2;  // format == kQcow2 only
  VmdkCreateOptions vmdk;             // format == kVmdk only
};

struct CreateRequest {
  std::string format;
  std::vector<std::string> options;  // -o lists
  std::string backing;
  std::optional<std::string> backing_format;
  std::optional<uint64_t> size;
};

// "on"/"true" or "off"/"false" for the boolean -o option `name`, with qemu-img's message.
Result<bool> ParseOnOff(const std::string& name, const std::string& value);

// Validates the combination (backing needs qcow2 and -F; option names and values known to
// the format) and fills a CreateSpec.
Result<CreateSpec> BuildCreateSpec(const CreateRequest& request);

// "Formatting 'FILE', fmt=qcow2 cluster_size=65536 ..." in qemu-img's option order.
std::string FormattingLine(const std::string& filename, const CreateSpec& spec);

// Creates the image described by `spec` (size already resolved).
// `sync`: fsync the new file (not for convert -t unsafe, as qemu-img).
Result<void> CreateImage(const std::string& filename, const CreateSpec& spec, bool sync = true);

}  // namespace kite::img
