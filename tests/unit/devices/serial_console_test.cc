// SerialConsole: option parsing, the file and stdio backends (with pipes standing in for the
// terminal), input back-pressure; FdOutputSink with a stalled consumer.
#include "devices/serial_console.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <thread>

#include "testing/temp_dir.h"

namespace kite {
namespace {

using namespace std::chrono_literals;

std::span<const uint8_t> Bytes(const std::string& s) {
  return std::span(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

// A SerialInput with a settable amount of room.
class FakeInput : public SerialInput {
 public:
  size_t QueueInput(std::span<const uint8_t> bytes) override {
    std::lock_guard lock(mutex_);
    size_t n = std::min(bytes.size(), space_);
    received_.append(reinterpret_cast<const char*>(bytes.data()), n);
    space_ -= n;
    return n;
  }
  size_t InputSpace() const override {
    std::lock_guard lock(mutex_);
    return space_;
  }
  void SetSpace(size_t space) {
    std::lock_guard lock(mutex_);
    space_ = space;
  }
  std::string received() const {
    std::lock_guard lock(mutex_);
    return received_;
  }

 private:
  mutable std::mutex mutex_;
  size_t space_ = 1 << 20;
  std::string received_;
};

struct Pipe {
  Pipe() {
    int fds[2];
    EXPECT_EQ(::pipe2(fds, O_CLOEXEC), 0);
    read_end.Reset(fds[0]);
    write_end.Reset(fds[1]);
  }
  UniqueFd read_end, write_end;
};

SerialConsoleParams Params(SerialConfig config, int input_fd = -1, int output_fd = -1,
                           std::function<void()> on_quit = nullptr) {
  SerialConsoleParams params;
  params.config = std::move(config);
  params.input_fd = input_fd;
  params.output_fd = output_fd;
  params.on_quit = std::move(on_quit);
  return params;
}

// Polls `condition` for up to two seconds.
template <typename F>
bool Eventually(F condition) {
  for (int i = 0; i < 200; ++i) {
    if (condition()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return condition();
}

TEST(ParseSerialOptionTest, Stdio) {
  auto config = ParseSerialOption("stdio");
  ASSERT_TRUE(config);
  EXPECT_EQ(config->backend, SerialBackend::kStdio);
}

TEST(ParseSerialOptionTest, None) {
  auto config = ParseSerialOption("none");
  ASSERT_TRUE(config);
  EXPECT_EQ(config->backend, SerialBackend::kNone);
}

TEST(ParseSerialOptionTest, FileWithPath) {
  auto config = ParseSerialOption("file:/tmp/a:b.log");
  ASSERT_TRUE(config);
  EXPECT_EQ(config->backend, SerialBackend::kFile);
  EXPECT_EQ(config->path, "/tmp/a:b.log");
}

TEST(ParseSerialOptionTest, FileWithoutPath_Refused) {
  auto config = ParseSerialOption("file:");
  ASSERT_FALSE(config);
  EXPECT_NE(config.error().message().find("path is empty"), std::string::npos);
}

TEST(ParseSerialOptionTest, Unknown_RefusedNamingTheValue) {
  for (const char* bad : {"", "STDIO", "tcp:1234", "stdio ", "file"}) {
    auto config = ParseSerialOption(bad);
    ASSERT_FALSE(config) << bad;
    EXPECT_NE(config.error().message().find("expected stdio"), std::string::npos) << bad;
  }
}

TEST(SerialConsoleTest, FileBackend_AppendsOutput) {
  testing::TempDir dir;
  std::string path = dir.File("serial.log");
  testing::WriteFile(path, "before\n");
  {
    auto console = SerialConsole::Create(Params({SerialBackend::kFile, path}));
    ASSERT_TRUE(console) << console.error().message();
    EXPECT_EQ((*console)->sink()->Write(Bytes("guest says hi\n")), 14u);
  }
  EXPECT_EQ(testing::ReadFile(path), "before\nguest says hi\n");
}

TEST(SerialConsoleTest, FileBackend_UnopenablePath_Refused) {
  auto console = SerialConsole::Create(Params({SerialBackend::kFile, "/nonexistent/dir/x"}));
  ASSERT_FALSE(console);
  EXPECT_NE(console.error().message().find("/nonexistent/dir/x"), std::string::npos);
}

TEST(SerialConsoleTest, NoneBackend_TakesEverything) {
  auto console = SerialConsole::Create(Params({SerialBackend::kNone, {}}));
  ASSERT_TRUE(console);
  EXPECT_EQ((*console)->sink()->Write(Bytes("abc")), 3u);
}

TEST(SerialConsoleTest, Stdio_OutputReachesOutputFd) {
  Pipe out;
  auto console = SerialConsole::Create(Params({}, -1, out.write_end.get()));
  ASSERT_TRUE(console);
  EXPECT_EQ((*console)->sink()->Write(Bytes("boot ok")), 7u);
  (*console)->Stop();
  char buf[16] = {};
  EXPECT_EQ(::read(out.read_end.get(), buf, sizeof(buf)), 7);
  EXPECT_EQ(std::string(buf), "boot ok");
}

TEST(SerialConsoleTest, Stdio_PipeInput_ForwardedUnfiltered) {
  Pipe in;
  Pipe out;
  std::atomic<int> quits{0};
  auto console =
      SerialConsole::Create(Params({}, in.read_end.get(), out.write_end.get(), [&] { ++quits; }));
  ASSERT_TRUE(console);
  FakeInput input;
  ASSERT_TRUE((*console)->StartInput(&input));
  std::string typed = "echo hi\n\x01x";  // not a terminal: Ctrl-A x is data
  ASSERT_EQ(::write(in.write_end.get(), typed.data(), typed.size()),
            static_cast<ssize_t>(typed.size()));
  EXPECT_TRUE(Eventually([&] { return input.received() == typed; })) << input.received();
  EXPECT_EQ(quits.load(), 0);
  (*console)->Stop();
}

TEST(SerialConsoleTest, R3_InputFlood_HeldBackNotBuffered) {
  Pipe in;
  Pipe out;
  auto console = SerialConsole::Create(Params({}, in.read_end.get(), out.write_end.get()));
  ASSERT_TRUE(console);
  FakeInput input;
  input.SetSpace(10);
  ASSERT_TRUE((*console)->StartInput(&input));
  ASSERT_EQ(::fcntl(in.write_end.get(), F_SETFL, O_NONBLOCK), 0);
  std::string chunk(4096, 'f');
  size_t written = 0;
  ssize_t n;
  while ((n = ::write(in.write_end.get(), chunk.data(), chunk.size())) > 0) written += n;
  EXPECT_TRUE(Eventually([&] { return input.received().size() == 10; }));
  std::this_thread::sleep_for(50ms);
  // The console took only what fitted; the rest waits in the pipe, not in kite.
  EXPECT_EQ(input.received().size(), 10u);
  EXPECT_GT(written, 10u);
  input.SetSpace(5);
  EXPECT_TRUE(Eventually([&] { return input.received().size() == 15; }));
  (*console)->Stop();
}

TEST(SerialConsoleTest, Stop_EndsBlockedInputThreadPromptly) {
  Pipe in;
  Pipe out;
  auto console = SerialConsole::Create(Params({}, in.read_end.get(), out.write_end.get()));
  ASSERT_TRUE(console);
  FakeInput input;
  ASSERT_TRUE((*console)->StartInput(&input));
  auto start = std::chrono::steady_clock::now();
  (*console)->Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);
}

TEST(FdOutputSinkTest, G29_StalledConsumer_WriteNeverBlocksAndRefusesBeyondCapacity) {
  Pipe out;
  ASSERT_EQ(::fcntl(out.write_end.get(), F_SETPIPE_SZ, 4096), 4096);
  auto start = std::chrono::steady_clock::now();
  FdOutputStats stats;
  {
    // The sink owns a duplicate, so the abandoned writer never sees its fd closed under it.
    FdOutputSink sink(UniqueFd(::dup(out.write_end.get())), /*capacity=*/1024,
                      /*drain_timeout=*/50ms);
    std::string block(1000, 'o');
    size_t taken = 0;
    for (int i = 0; i < 1000; ++i) taken += sink.Write(Bytes(block));  // 1 MB, nobody reads
    stats = sink.stats();
    EXPECT_LE(taken, 4096u + 4096u + 1024u);  // pipe + one chunk in flight + buffer
    EXPECT_EQ(stats.refused + taken, 1000u * 1000u);
  }
  // The destructor gave up on the stuck writer after its drain timeout.
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
}

TEST(FdOutputSinkTest, ClosedReader_WritesRefusedNoSigpipe) {
  Pipe out;
  FdOutputSink sink(out.write_end.get());
  out.read_end.Reset();
  EXPECT_EQ(sink.Write(Bytes("x")), 1u);
  EXPECT_TRUE(Eventually([&] { return sink.Write(Bytes("y")) == 0; }));
  EXPECT_GE(sink.stats().refused, 1u);
}

}  // namespace
}  // namespace kite
