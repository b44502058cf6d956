// B8 (shared/BENCHMARKS.md): the control socket's round trip and throughput, against any QMP
// server (kite's --api-sock, QEMU's -qmp unix:...). Each connection reads the greeting and
// negotiates first (not timed). Then:
//   latency:    one connection, COUNT sequential `query-status` requests; each round trip is
//               timed from just before the request is written to when its reply line is
//               parsed; p50, p99 and max over all of them.
//   throughput: CLIENTS connections, one thread each, sending `query-status` back to back
//               (one outstanding request per connection) for SECONDS; requests answered per
//               second, all connections together. Connection i goes to SOCKET number
//               i % (number of sockets): QEMU serves one client per -qmp socket, so it is
//               given one socket per client; kite serves up to 16 clients on one.
//
//   b8_qmp_client SOCKET [SOCKET...] [--count N] [--clients C] [--seconds S]
//
// Prints one line: "count=N p50_us=.. p99_us=.. max_us=.. clients=C seconds=S rps=..".
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "qmp_client.h"

namespace {

using Clock = std::chrono::steady_clock;
constexpr const char* kQueryStatus = R"({"execute":"query-status"})";

struct Options {
  std::vector<std::string> sockets;
  int count = 10000;
  int clients = 8;
  double seconds = 3;
};

Options ParseOptions(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) bench::Die("missing value for " + a);
      return argv[++i];
    };
    if (a == "--count") {
      o.count = std::atoi(value());
    } else if (a == "--clients") {
      o.clients = std::atoi(value());
    } else if (a == "--seconds") {
      o.seconds = std::atof(value());
    } else if (a[0] != '-') {
      o.sockets.push_back(a);
    } else {
      bench::Die("usage: b8_qmp_client SOCKET [SOCKET...] [--count N] [--clients C] [--seconds S]");
    }
  }
  if (o.sockets.empty() || o.count < 1 || o.clients < 1 || o.seconds <= 0) {
    bench::Die("usage: b8_qmp_client SOCKET [SOCKET...] [--count N] [--clients C] [--seconds S]");
  }
  return o;
}

void CheckStatus(const nlohmann::json& reply) {
  if (!reply.contains("return") || !reply["return"].contains("status")) {
    bench::Die("unexpected query-status reply: " + reply.dump());
  }
}

// Sequential round trips on one connection: sorted latencies in microseconds.
std::vector<double> Latencies(const Options& o) {
  bench::QmpClient client(o.sockets[0]);
  std::vector<double> us;
  us.reserve(static_cast<size_t>(o.count));
  for (int i = 0; i < o.count; i++) {
    auto t0 = Clock::now();
    nlohmann::json reply = client.Execute(kQueryStatus);
    auto t1 = Clock::now();
    CheckStatus(reply);
    us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
  }
  std::sort(us.begin(), us.end());
  return us;
}

// CLIENTS connections in parallel threads for SECONDS: total requests per second.
double Throughput(const Options& o) {
  std::vector<std::unique_ptr<bench::QmpClient>> clients;
  for (int i = 0; i < o.clients; i++) {
    const std::string& socket = o.sockets[static_cast<size_t>(i) % o.sockets.size()];
    clients.push_back(std::make_unique<bench::QmpClient>(socket));
  }
  std::atomic<bool> go{false};
  std::atomic<bool> stop{false};
  std::vector<uint64_t> done(static_cast<size_t>(o.clients), 0);
  std::vector<std::thread> threads;
  for (int i = 0; i < o.clients; i++) {
    threads.emplace_back([&, i] {
      while (!go.load()) std::this_thread::yield();
      uint64_t n = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        CheckStatus(clients[static_cast<size_t>(i)]->Execute(kQueryStatus));
        n++;
      }
      done[static_cast<size_t>(i)] = n;
    });
  }
  auto t0 = Clock::now();
  go.store(true);
  std::this_thread::sleep_for(std::chrono::duration<double>(o.seconds));
  stop.store(true);
  for (auto& t : threads) t.join();
  double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
  uint64_t total = 0;
  for (uint64_t n : done) total += n;
  return static_cast<double>(total) / elapsed;
}

double Percentile(const std::vector<double>& sorted, double p) {
  size_t i = static_cast<size_t>(p * static_cast<double>(sorted.size() - 1) + 0.5);
  return sorted[std::min(i, sorted.size() - 1)];
}

}  // namespace

int main(int argc, char** argv) {
  Options o = ParseOptions(argc, argv);
  std::vector<double> us = Latencies(o);
  double rps = Throughput(o);
  std::printf("count=%d p50_us=%.1f p99_us=%.1f max_us=%.1f clients=%d seconds=%g rps=%.0f\n",
              o.count, Percentile(us, 0.50), Percentile(us, 0.99), us.back(), o.clients, o.seconds,
              rps);
  return 0;
}
