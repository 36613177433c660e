#pragma once
// InsertThread: one engine thread, at a lower CPU priority, that runs the graph
// insertions of write batches for the writers, who wait for them. Searches run at
// the application's priority, so on a busy machine they come first and keep their
// latency while writes go on (issue 15): the kernel gives the insert work what the
// searches leave. The OpenMP team an insertion uses is started from this thread and
// inherits its priority.
//
// Thread safety: Run may be called from any number of threads; jobs run one at a
// time, in the order they came.

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

#include "core/status.h"
#include "engine/background_priority.h"

namespace strata::engine {

class InsertThread {
 public:
  // `priority`: the thread's CPU priority (engine/background_priority.h).
  explicit InsertThread(const BackgroundPriority& priority);
  ~InsertThread();
  InsertThread(const InsertThread&) = delete;
  InsertThread& operator=(const InsertThread&) = delete;

  // Runs `job` on the thread and returns its status once it has run.
  Status Run(const std::function<Status()>& job);

 private:
  struct Job {
    const std::function<Status()>* fn;
    Status status;
    bool done = false;
  };
  void Loop(const BackgroundPriority& priority);

  std::mutex mu_;
  std::condition_variable work_cv_, done_cv_;
  std::deque<Job*> queue_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace strata::engine
