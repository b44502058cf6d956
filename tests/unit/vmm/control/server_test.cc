// QmpServer over a real Unix socket in a temporary directory: the socket file policy, the
// greeting, several clients, the limits (C3, C5, C6, output cap), events, request order,
// disconnect mid-command (C8) and a connection from another uid (C14).
#include <grp.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <future>
#include <optional>
#include <thread>

#include "base/unique_fd.h"
#include "testing/kvm_required.h"
#include "testing/temp_dir.h"
#include "vmm/control/qmp_protocol.h"
#include "vmm/control/qmp_server.h"

namespace kite::qmp {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

int ConnectTo(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  path.copy(addr.sun_path, path.size());
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// A raw test client: lines in, bytes out.
class Client {
 public:
  explicit Client(const std::string& path) : fd_(ConnectTo(path)) {}
  bool connected() const { return fd_.valid(); }
  void Write(std::string_view bytes) {
    ASSERT_EQ(::send(fd_.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(bytes.size()));
  }
  // The next line (without \r\n); nullopt on timeout or EOF (then eof() is true).
  std::optional<std::string> ReadLine(std::chrono::milliseconds timeout = 3000ms) {
    auto until = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      size_t end = buffer_.find("\r\n");
      if (end != std::string::npos) {
        std::string line = buffer_.substr(0, end);
        buffer_.erase(0, end + 2);
        return line;
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          until - std::chrono::steady_clock::now());
      if (left.count() <= 0 || eof_) return std::nullopt;
      pollfd p{fd_.get(), POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      char chunk[65536];
      ssize_t n = ::recv(fd_.get(), chunk, sizeof(chunk), 0);
      if (n <= 0) {
        eof_ = true;
        continue;
      }
      buffer_.append(chunk, static_cast<size_t>(n));
    }
  }
  json ReadJson() {
    auto line = ReadLine();
    EXPECT_TRUE(line.has_value()) << "no line";
    return line ? json::parse(*line, nullptr, false) : json();
  }
  // True when the server closes the connection within `timeout` (lines before it are skipped).
  bool ClosedWithin(std::chrono::milliseconds timeout) {
    auto until = std::chrono::steady_clock::now() + timeout;
    while (!eof_ && std::chrono::steady_clock::now() < until) ReadLine(50ms);
    return eof_;
  }
  json Execute(const std::string& request) {
    Write(request);
    return ReadJson();
  }
  void Negotiate() {
    ReadJson();  // greeting
    EXPECT_EQ(Execute(R"({"execute":"qmp_capabilities"})"), json({{"return", json::object()}}));
  }
  void Close() { fd_.Reset(); }
  void ShutdownWrite() { ::shutdown(fd_.get(), SHUT_WR); }

 private:
  UniqueFd fd_;
  std::string buffer_;
  bool eof_ = false;
};

size_t OpenFds() {
  size_t n = 0;
  for ([[maybe_unused]] auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

template <class Pred>
bool WaitFor(Pred pred, std::chrono::milliseconds timeout = 3000ms) {
  auto until = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    VmConfig config;
    config.kernel = "vmlinux";
    auto created = Machine::Create(config);
    ASSERT_TRUE(created) << created.error().message();
    machine_ = std::move(*created);
    path_ = dir_.File("vm.sock");
  }
  void StartServer(ServerOptions options = {}) {
    auto started = QmpServer::Start(*machine_, path_, std::move(options));
    ASSERT_TRUE(started) << started.error().message();
    server_ = std::move(*started);
  }

  testing::TempDir dir_;
  std::string path_;
  std::unique_ptr<Machine> machine_;
  std::unique_ptr<QmpServer> server_;
};

TEST_F(ServerTest, Connect_GreetingLine) {
  StartServer();
  Client client(path_);
  ASSERT_TRUE(client.connected());
  auto line = client.ReadLine();
  ASSERT_TRUE(line);
  EXPECT_EQ(*line + "\r\n", GreetingLine());
}

TEST_F(ServerTest, SocketFile_Mode0600_RemovedAtStop) {
  StartServer();
  struct stat st {};
  ASSERT_EQ(::lstat(path_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  server_->Stop();
  EXPECT_NE(::lstat(path_.c_str(), &st), 0);
}

TEST_F(ServerTest, StaleSocket_Replaced) {
  {
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    path_.copy(addr.sun_path, path_.size());
    ASSERT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  }  // closed without unlink: a stale socket
  StartServer();
  Client client(path_);
  EXPECT_TRUE(client.ReadLine());
}

TEST_F(ServerTest, LiveSocket_Refused) {
  StartServer();
  auto second = QmpServer::Start(*machine_, path_);
  ASSERT_FALSE(second);
  EXPECT_NE(second.error().message().find("in use"), std::string::npos);
  Client client(path_);  // the first one still serves
  EXPECT_TRUE(client.ReadLine());
}

TEST_F(ServerTest, NonSocketFile_RefusedAndKept) {
  testing::WriteFile(path_, "precious");
  auto started = QmpServer::Start(*machine_, path_);
  ASSERT_FALSE(started);
  EXPECT_NE(started.error().message().find("not a socket"), std::string::npos);
  EXPECT_EQ(testing::ReadFile(path_), "precious");
}

TEST_F(ServerTest, TooLongPath_Refused) {
  EXPECT_FALSE(QmpServer::Start(*machine_, "/tmp/" + std::string(200, 'x')));
}

TEST_F(ServerTest, SeveralClients_EachServedWithItsIds) {
  StartServer();
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < 4; ++i) {
    clients.push_back(std::make_unique<Client>(path_));
    clients.back()->Negotiate();
  }
  EXPECT_EQ(server_->ClientCount(), 4u);
  for (int i = 0; i < 4; ++i) {
    json reply =
        clients[i]->Execute(R"({"execute":"query-status","id":)" + std::to_string(i) + "}");
    EXPECT_EQ(reply["id"], i);
    EXPECT_EQ(reply["return"]["status"], "prelaunch");
  }
}

TEST_F(ServerTest, TwoRequestsOneWrite_TwoRepliesInOrder) {
  StartServer();
  Client client(path_);
  client.Negotiate();
  client.Write(R"({"execute":"stop","id":1}{"execute":"query-kvm","id":2})");
  EXPECT_EQ(client.ReadJson()["id"], 1);
  EXPECT_EQ(client.ReadJson()["id"], 2);
}

TEST_F(ServerTest, NotNegotiated_ClosedAfterIdleTimeout) {
  ServerOptions options;
  options.idle_timeout = 200ms;
  StartServer(options);
  Client silent(path_);
  Client chatty(path_);
  chatty.ReadLine();
  // Talking without negotiating does not extend the deadline.
  chatty.Write(R"({"execute":"query-status"})");
  EXPECT_TRUE(silent.ClosedWithin(2000ms));
  EXPECT_TRUE(chatty.ClosedWithin(2000ms));
}

TEST_F(ServerTest, PartialMessage_ClosedAfterIdleTimeout_IdleNegotiatedStays) {
  ServerOptions options;
  options.idle_timeout = 200ms;
  StartServer(options);
  Client slow(path_);
  slow.Negotiate();
  Client listener(path_);
  listener.Negotiate();
  slow.Write(R"({"execute":)");
  EXPECT_TRUE(slow.ClosedWithin(2000ms));
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(listener.Execute(R"({"execute":"query-kvm"})")["return"]["present"], true);
}

TEST_F(ServerTest, BeyondClientCap_ErrorLineAndClosed) {
  ServerOptions options;
  options.max_clients = 2;
  StartServer(options);
  Client a(path_), b(path_);
  ASSERT_TRUE(a.ReadLine());
  ASSERT_TRUE(b.ReadLine());
  Client c(path_);
  json refused = c.ReadJson();
  EXPECT_EQ(refused["error"]["class"], "GenericError");
  EXPECT_NE(refused["error"]["desc"].get<std::string>().find("limit 2"), std::string::npos);
  EXPECT_TRUE(c.ClosedWithin(2000ms));
  a.Close();
  ASSERT_TRUE(WaitFor([&] { return server_->ClientCount() == 1; }));
  Client d(path_);
  auto greeting = d.ReadLine();
  ASSERT_TRUE(greeting);
  EXPECT_NE(greeting->find("\"QMP\""), std::string::npos);
}

TEST_F(ServerTest, ManyConnections_FdsBounded) {
  ServerOptions options;
  options.max_clients = 4;
  StartServer(options);
  size_t before = OpenFds();
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < 200; ++i) clients.push_back(std::make_unique<Client>(path_));
  for (auto& client : clients) client->ReadLine();
  // Ours: 200 client fds; the server's: at most max_clients (+ a few in flight).
  EXPECT_LE(OpenFds(), before + 200 + 4 + 2);
  EXPECT_EQ(server_->ClientCount(), 4u);
}

TEST_F(ServerTest, OversizedMessage_ErrorThenClosed_OthersServed) {
  ServerOptions options;
  options.limits.max_message = 1024;
  StartServer(options);
  Client big(path_);
  big.Negotiate();
  Client other(path_);
  other.Negotiate();
  big.Write("{\"execute\":\"" + std::string(4096, 'x') + "\"}");
  json error = big.ReadJson();
  EXPECT_NE(error["error"]["desc"].get<std::string>().find("too long"), std::string::npos);
  EXPECT_TRUE(big.ClosedWithin(2000ms));
  EXPECT_EQ(other.Execute(R"({"execute":"query-kvm"})")["return"]["enabled"], true);
}

TEST_F(ServerTest, ClientThatNeverReads_Dropped_OthersServed) {
  ServerOptions options;
  options.max_output = 64 << 10;
  StartServer(options);
  Client deaf(path_);
  deaf.Negotiate();
  Client waiting(path_);  // not negotiated: gets no events
  ASSERT_TRUE(waiting.ReadLine());
  Event event{"POWERDOWN", nullptr, 1, 2};
  for (int i = 0; i < 40000 && server_->ClientCount() == 2; ++i) server_->InjectEvent(event);
  EXPECT_TRUE(WaitFor([&] { return server_->ClientCount() == 1; }));
  EXPECT_EQ(waiting.Execute(R"({"execute":"qmp_capabilities"})"),
            json({{"return", json::object()}}));
}

TEST_F(ServerTest, Events_OnlyToNegotiatedClients) {
  StartServer();
  Client a(path_), b(path_), fresh(path_);
  a.Negotiate();
  b.Negotiate();
  ASSERT_TRUE(fresh.ReadLine());
  server_->InjectEvent({"RESUME", nullptr, 7, 8});
  std::string expected = R"({"timestamp":{"seconds":7,"microseconds":8},"event":"RESUME"})";
  EXPECT_EQ(a.ReadLine(), expected);
  EXPECT_EQ(b.ReadLine(), expected);
  // The un-negotiated client's next line is its reply, not the event.
  EXPECT_EQ(fresh.Execute(R"({"execute":"qmp_capabilities"})"), json({{"return", json::object()}}));
}

TEST_F(ServerTest, EventDuringSlowCommand_WrittenBeforeItsReturn) {
  ServerOptions options;
  QmpServer* server = nullptr;
  options.before_slow_command = [&server] { server->InjectEvent({"STOP", nullptr, 1, 1}); };
  StartServer(options);
  server = server_.get();
  Client client(path_);
  client.Negotiate();
  client.Write(R"({"execute":"stop","id":"s"})");
  EXPECT_EQ(client.ReadJson()["event"], "STOP");
  EXPECT_EQ(client.ReadJson()["id"], "s");
}

TEST_F(ServerTest, SlowCommandRunning_OtherClientsQueriesAnswered_OwnOrderKept) {
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  ServerOptions options;
  options.before_slow_command = [released] { released.wait(); };
  StartServer(options);
  Client busy(path_), other(path_);
  busy.Negotiate();
  other.Negotiate();
  busy.Write(R"({"execute":"stop","id":1}{"execute":"query-kvm","id":2})");
  EXPECT_EQ(other.Execute(R"({"execute":"query-status","id":"o"})")["id"], "o");
  EXPECT_FALSE(busy.ReadLine(100ms));  // query-kvm waits behind stop
  release.set_value();
  EXPECT_EQ(busy.ReadJson()["id"], 1);
  EXPECT_EQ(busy.ReadJson()["id"], 2);
}

TEST_F(ServerTest, DisconnectMidCommand_CommandCompletes_NoLeak) {
  std::promise<void> release, ran;
  std::shared_future<void> released = release.get_future().share();
  std::atomic<int> slow_commands{0};
  ServerOptions options;
  options.before_slow_command = [&, released] {
    if (slow_commands++ == 0) {
      ran.set_value();
      released.wait();
    }
  };
  StartServer(options);
  size_t fds_before = OpenFds();
  {
    Client leaving(path_);
    leaving.Negotiate();
    leaving.Write(R"({"execute":"stop"})");
    ran.get_future().wait();
  }  // disconnected while stop runs
  release.set_value();
  EXPECT_TRUE(WaitFor([&] { return server_->ClientCount() == 0; }));
  EXPECT_TRUE(WaitFor([&] { return OpenFds() == fds_before; }))
      << OpenFds() << " vs " << fds_before;
  Client next(path_);
  next.Negotiate();
  EXPECT_EQ(next.Execute(R"({"execute":"stop","id":9})")["id"], 9);
  EXPECT_EQ(slow_commands.load(), 2);
}

TEST_F(ServerTest, Quit_ReplySentThenStopFlushes) {
  StartServer();
  Client client(path_);
  client.Negotiate();
  EXPECT_EQ(client.Execute(R"({"execute":"quit"})"), json({{"return", json::object()}}));
  server_->Stop();
  EXPECT_TRUE(client.ClosedWithin(2000ms));
}

TEST_F(ServerTest, HalfClosedAfterRequests_AllAnswered) {
  StartServer();
  Client client(path_);
  client.ReadLine();
  client.Write(R"({"execute":"qmp_capabilities"}{"execute":"query-kvm","id":1})");
  client.ShutdownWrite();  // as `socat` does when its input ends
  EXPECT_TRUE(client.ReadLine());
  EXPECT_EQ(client.ReadJson()["id"], 1);
  EXPECT_TRUE(client.ClosedWithin(2000ms));
}

// C14: SO_PEERCRED. The socket is made world-accessible here on purpose (as a mistaken chmod
// would), so that only the uid check stands between another user and the VM.
TEST_F(ServerTest, OtherUid_ClosedWithoutGreeting) {
  if (::geteuid() != 0) {
    if (testing::RunningInCi()) FAIL() << "CI=true: this test must run as root";
    GTEST_SKIP() << "needs root to switch to another uid";
  }
  StartServer();
  ASSERT_EQ(::chmod(dir_.path().c_str(), 0755), 0);
  ASSERT_EQ(::chmod(path_.c_str(), 0666), 0);
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    if (::setgroups(0, nullptr) != 0 || ::setresgid(65534, 65534, 65534) != 0 ||
        ::setresuid(65534, 65534, 65534) != 0) {
      _exit(10);
    }
    int fd = ConnectTo(path_);
    if (fd < 0) _exit(11);
    char c;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 3000) != 1) _exit(12);
    _exit(::recv(fd, &c, 1, 0) == 0 ? 0 : 13);  // EOF at once: no greeting
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "10 setuid, 11 connect, 12 no EOF, 13 got data";
  Client same_uid(path_);
  EXPECT_TRUE(same_uid.ReadLine());
}

TEST_F(ServerTest, Mode0600_OtherUidCannotConnect) {
  if (::geteuid() != 0) {
    if (testing::RunningInCi()) FAIL() << "CI=true: this test must run as root";
    GTEST_SKIP() << "needs root to switch to another uid";
  }
  StartServer();
  ASSERT_EQ(::chmod(dir_.path().c_str(), 0755), 0);
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    if (::setgroups(0, nullptr) != 0 || ::setresgid(65534, 65534, 65534) != 0 ||
        ::setresuid(65534, 65534, 65534) != 0) {
      _exit(10);
    }
    _exit(ConnectTo(path_) < 0 && errno == EACCES ? 0 : 11);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

}  // namespace
}  // namespace kite::qmp
