#include "core/progress.h"

#include <unistd.h>

#include <cstdio>

#include <fmt/core.h>

namespace strata {
namespace {
std::atomic<bool> g_quiet{false};
}

void Progress::SetGlobalQuiet(bool quiet) { g_quiet.store(quiet); }
bool Progress::GlobalQuiet() { return g_quiet.load(); }

Progress::Progress(std::string label, uint64_t total, bool quiet, double interval_s)
    : label_(std::move(label)),
      total_(total),
      quiet_(quiet || GlobalQuiet()),
      tty_(isatty(STDERR_FILENO) == 1),
      interval_s_(interval_s) {
  next_print_s_.store(interval_s_);
}

Progress::~Progress() {
  if (!finished_) Finish();
}

void Progress::Add(uint64_t n) {
  done_.fetch_add(n, std::memory_order_relaxed);
  if (!enabled()) return;
  double now = timer_.Seconds();
  double next = next_print_s_.load(std::memory_order_relaxed);
  if (now < next) return;
  // One thread wins the right to print this interval.
  if (!next_print_s_.compare_exchange_strong(next, now + interval_s_)) return;
  std::lock_guard<std::mutex> lock(print_mu_);
  Print(false);
}

void Progress::Finish() {
  if (finished_) return;
  finished_ = true;
  if (quiet_) return;
  std::lock_guard<std::mutex> lock(print_mu_);
  Print(true);
}

void Progress::Print(bool final_line) {
  double elapsed = timer_.Seconds();
  uint64_t done = done_.load(std::memory_order_relaxed);
  std::string line;
  if (final_line) {
    line = fmt::format("{}: {} done in {:.1f} s", label_, done, elapsed);
  } else {
    double rate = elapsed > 0 ? done / elapsed : 0;
    double pct = total_ ? 100.0 * done / total_ : 0;
    double eta = rate > 0 && total_ > done ? (total_ - done) / rate : 0;
    line = fmt::format("{}: {}/{} ({:.1f}%) {:.0f}/s, eta {:.0f} s", label_, done, total_, pct,
                       rate, eta);
  }
  if (tty_) {
    std::fprintf(stderr, "\r\033[K%s%s", line.c_str(), final_line ? "\n" : "");
  } else if (final_line) {
    std::fprintf(stderr, "%s\n", line.c_str());
  }
  std::fflush(stderr);
}

}  // namespace strata
