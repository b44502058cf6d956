// Shared fixture for the virtqueue tests: a FakeDriver and the device-side Queue wired together.
#pragma once

#include <gtest/gtest.h>

#include "testing/virtio/fake_driver.h"
#include "virtio/queue.h"

namespace kite::virtio {

class QueueTest : public ::testing::Test {
 protected:
  explicit QueueTest(testing::FakeDriverOptions options = {})
      : driver_(options), queue_(options.queue_size) {}

  // Configures and activates the queue the way the transport does at QueueReady = 1.
  void Activate(bool event_idx = true, bool indirect = true) {
    driver_.Configure(&queue_);
    auto r = queue_.Activate(&driver_.memory(), event_idx, indirect);
    ASSERT_TRUE(r) << r.error().message();
  }

  // Publishes a chain and pops it; fails the test unless a chain comes out.
  uint16_t AddAndPop(const std::vector<testing::FakeBuffer>& buffers) {
    uint16_t head = driver_.AddChain(buffers);
    driver_.Publish();
    EXPECT_EQ(queue_.Pop(&chain_), Queue::PopResult::kChain);
    return head;
  }

  // The next used element must be {id, len}.
  void ExpectUsed(uint16_t id, uint32_t len) {
    auto used = driver_.PopUsed();
    ASSERT_TRUE(used.has_value()) << "no used element";
    EXPECT_EQ(used->id, id);
    EXPECT_EQ(used->len, len);
  }

  // Host pointer of guest address `addr` (for checking iovecs).
  uint8_t* Host(uint64_t addr, uint64_t len = 1) {
    return driver_.memory().Slice(GuestAddr(addr), len).data();
  }

  testing::FakeDriver driver_;
  Queue queue_;
  DescriptorChain chain_;
};

}  // namespace kite::virtio
