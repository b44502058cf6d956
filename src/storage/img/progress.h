// Progress display for -p: "    (NN.NN/100%)\r" redrawn on a terminal, as qemu-img does;
// nothing when not enabled or not on a terminal.
#pragma once

#include <cstdint>
#include <cstdio>
#include <ostream>

namespace kite::img {

class Progress {
 public:
  Progress(std::ostream& out, bool enabled, uint64_t total)
      : out_(out), enabled_(enabled), total_(total) {
    Draw(0.0);
  }
  ~Progress() {
    if (enabled_) out_ << "\n" << std::flush;
  }
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  // Adds `done` units of work; redraws when the figure moved by at least 0.01 %.
  void Advance(uint64_t done) {
    done_ += done;
    double pct = total_ == 0 ? 100.0 : 100.0 * static_cast<double>(done_) / total_;
    if (pct > 100.0) pct = 100.0;
    if (pct - shown_ >= 0.01 || (pct == 100.0 && shown_ != 100.0)) Draw(pct);
  }

 private:
  void Draw(double pct) {
    shown_ = pct;
    if (!enabled_) return;
    char line[32];
    std::snprintf(line, sizeof(line), "    (%3.2f/100%%)\r", pct);
    out_ << line << std::flush;
  }

  std::ostream& out_;
  bool enabled_;
  uint64_t total_;
  uint64_t done_ = 0;
  double shown_ = 0.0;
};

}  // namespace kite::img
