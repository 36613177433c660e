#include "engine/background_priority.h"

#include <fmt/format.h>
#include <omp.h>
#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <string>

namespace strata::engine {

namespace {

// The CPUs this process may run on, ascending.
std::vector<int> AllowedCpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<int> out;
  if (::sched_getaffinity(0, sizeof(set), &set) != 0) return out;
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (CPU_ISSET(c, &set)) out.push_back(c);
  }
  return out;
}

Result<int> ParseCpu(std::string_view text, std::string_view whole) {
  int v = -1;
  const char* end = text.data() + text.size();
  auto [p, ec] = std::from_chars(text.data(), end, v);
  if (text.empty() || ec != std::errc() || p != end || v < 0) {
    return Error(InvalidArgument("CPU list \"{}\": \"{}\" is not a CPU number", whole, text));
  }
  if (v >= CPU_SETSIZE) {
    return Error(InvalidArgument("CPU list \"{}\": CPU {} is past the largest this system can name ({})",
                                 whole, v, CPU_SETSIZE - 1));
  }
  return v;
}

}  // namespace

Status ApplyToThisThread(const BackgroundPriority& p) {
  Status first = Status::Ok();
  if (p.idle) {
    sched_param param{};
    param.sched_priority = 0;
    if (int rc = ::pthread_setschedparam(::pthread_self(), SCHED_IDLE, &param); rc != 0) {
      first = IOError("cannot run a background thread under SCHED_IDLE: {}", std::strerror(rc));
    }
  } else {
    errno = 0;
    const int now = ::getpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()));
    // Only ever lowered: a thread already at or past p.nice (a server started under nice) keeps it.
    if ((errno != 0 || now < p.nice) && ::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), p.nice) != 0) {
      first = IOError("cannot lower a background thread's priority to nice {}: {}", p.nice, std::strerror(errno));
    }
  }
  uint32_t threads = p.threads;
  if (!p.cpus.empty()) {
    cpu_set_t set;
    CPU_ZERO(&set);
    for (int c : p.cpus) CPU_SET(c, &set);
    if (int rc = ::pthread_setaffinity_np(::pthread_self(), sizeof(set), &set); rc != 0) {
      if (first.ok()) {
        first = IOError("cannot confine a background thread to CPUs {}: {}", FormatCpuList(p.cpus),
                        std::strerror(rc));
      }
    } else {
      // At most one team thread per CPU it may use; never more than it would have had.
      const auto n = static_cast<uint32_t>(p.cpus.size());
      threads = std::min<uint32_t>(threads > 0 ? threads : static_cast<uint32_t>(::omp_get_max_threads()), n);
    }
  }
  // nthreads-var is per thread: only the parallel regions this thread starts follow it.
  if (threads > 0) ::omp_set_num_threads(static_cast<int>(threads));
  return first;
}

Result<std::vector<int>> ParseCpuList(std::string_view text) {
  std::vector<int> out;
  if (text.empty()) return out;
  const std::vector<int> allowed = AllowedCpus();
  if (text == "auto") {
    if (allowed.size() >= 2) out.assign(allowed.begin() + 1, allowed.end());
    return out;
  }
  size_t pos = 0;
  while (pos <= text.size()) {
    const size_t comma = std::min(text.find(',', pos), text.size());
    const std::string_view item = text.substr(pos, comma - pos);
    const size_t dash = item.find('-');
    if (dash == std::string_view::npos) {
      STRATA_ASSIGN_OR_RETURN(int c, ParseCpu(item, text));
      out.push_back(c);
    } else {
      STRATA_ASSIGN_OR_RETURN(int lo, ParseCpu(item.substr(0, dash), text));
      STRATA_ASSIGN_OR_RETURN(int hi, ParseCpu(item.substr(dash + 1), text));
      if (hi < lo) return Error(InvalidArgument("CPU list \"{}\": range \"{}\" runs backwards", text, item));
      for (int c = lo; c <= hi; ++c) out.push_back(c);
    }
    pos = comma + 1;
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  for (int c : out) {
    if (!std::binary_search(allowed.begin(), allowed.end(), c)) {
      return Error(InvalidArgument("CPU list \"{}\": this process may not run on CPU {} (it may run on {})", text,
                                   c, FormatCpuList(allowed)));
    }
  }
  return out;
}

std::string FormatCpuList(const std::vector<int>& cpus) {
  std::string out;
  for (size_t i = 0; i < cpus.size();) {
    size_t j = i;
    while (j + 1 < cpus.size() && cpus[j + 1] == cpus[j] + 1) ++j;
    if (!out.empty()) out += ',';
    out += j == i ? fmt::format("{}", cpus[i]) : fmt::format("{}-{}", cpus[i], cpus[j]);
    i = j + 1;
  }
  return out;
}

}  // namespace strata::engine
