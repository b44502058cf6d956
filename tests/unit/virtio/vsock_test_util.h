// A virtio-vsock device (src/virtio/vsock*.cc) driven by the fake driver through its three
// queues, with real Unix sockets on the host side in a temporary directory. No KVM.
#pragma once

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <asio/io_context.hpp>
#include <chrono>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/unique_fd.h"
#include "testing/temp_dir.h"
#include "testing/virtio/fake_driver.h"
#include "virtio/vsock.h"
#include "virtio/vsock_device.h"
#include "virtio/vsock_packet.h"

namespace kite::virtio::vsocktest {

using vsock::Header;

constexpr uint64_t kCid = 3;
constexpr uint32_t kRxBuf = 4096;  // payload room of one rx buffer (Linux 6.1's size)

struct Packet {
  Header hdr{};
  std::string data;
};

class VsockFixture : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override { device_.reset(); }

  // A header from the guest's `src_port` to the host's `dst_port`.
  Header Guest(uint16_t op, uint32_t src_port, uint32_t dst_port, uint32_t len = 0) const;
  // Sends one packet on tx (header and payload as two descriptors) and runs the loop.
  void Tx(const Header& hdr, const std::string& payload = "");
  // Runs the loop until `pred` or a second passes; true when pred held.
  bool RunUntil(const std::function<bool()>& pred);
  void Pump() {
    RunUntil([] { return false; });
  }
  // The next packet the device put in an rx buffer (the buffer is given back), running the
  // loop until there is one or a second passes.
  std::optional<Packet> Rx();
  // A host socket listening on "<path>_<port>", and one connected to <path>.
  UniqueFd HostListen(uint32_t port);
  UniqueFd HostConnect();
  uint32_t tx_used() const { return tx_used_; }

  kite::testing::TempDir dir_;
  std::string path_ = dir_.File("v.sock");
  asio::io_context loop_;
  kite::testing::FakeDriver rx_{{.queue_size = 64, .low_size = 16u << 20}};
  kite::testing::FakeDriver tx_{&rx_, 64};
  kite::testing::FakeDriver ev_{&rx_, 8};
  Queue rxq_{256}, txq_{256}, evq_{16};
  std::vector<Queue*> queues_{&rxq_, &txq_, &evq_};
  std::shared_ptr<VirtioDevice> device_;
  std::map<uint16_t, uint64_t> rx_buffers_;  // head -> buffer
  std::vector<std::string> broken_;
  uint32_t guest_buf_alloc_ = 256 * 1024;
  uint32_t guest_fwd_cnt_ = 0;
  uint32_t tx_used_ = 0;

 private:
  void GiveRx(uint64_t addr);
};

}  // namespace kite::virtio::vsocktest
