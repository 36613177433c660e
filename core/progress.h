#pragma once
// Progress reporting for long work (builds, clustering, ground truth).
//
// Writes "label: done/total (pct%) rate/s, eta" to stderr at most every
// `interval` seconds, overwriting one line. Silent when stderr is not a
// terminal or when quiet; Finish() prints one summary line unless quiet.
// Thread-safe: Add() may be called from many threads (e.g. OpenMP workers).

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>

#include "core/timer.h"

namespace strata {

class Progress {
 public:
  Progress(std::string label, uint64_t total, bool quiet = false, double interval_s = 0.5);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  // Records `n` more units done; prints when the interval has passed.
  void Add(uint64_t n = 1);
  // Prints the final line ("label: total in 3.2 s").
  void Finish();
  uint64_t done() const { return done_.load(std::memory_order_relaxed); }
  bool enabled() const { return tty_ && !quiet_; }

  // Process-wide default for quietness (set by --quiet in the CLI).
  static void SetGlobalQuiet(bool quiet);
  static bool GlobalQuiet();

 private:
  void Print(bool final_line);

  std::string label_;
  uint64_t total_;
  bool quiet_;
  bool tty_;
  double interval_s_;
  Timer timer_;
  std::atomic<uint64_t> done_{0};
  std::atomic<double> next_print_s_{0};
  std::mutex print_mu_;
  bool finished_ = false;
};

}  // namespace strata
