#include "engine/insert_thread.h"

#include <exception>

namespace strata::engine {

InsertThread::InsertThread(const BackgroundPriority& priority)
    : thread_([this, priority] { Loop(priority); }) {}

InsertThread::~InsertThread() {
  {
    std::lock_guard<std::mutex> g(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  thread_.join();
}

Status InsertThread::Run(const std::function<Status()>& job) {
  Job j{&job, Status::Ok(), false};
  std::unique_lock<std::mutex> lk(mu_);
  if (stop_) return Cancelled("the engine is closing");
  queue_.push_back(&j);
  work_cv_.notify_one();
  done_cv_.wait(lk, [&] { return j.done; });
  return j.status;
}

void InsertThread::Loop(const BackgroundPriority& priority) {
  (void)ApplyToThisThread(priority);  // best effort: Engine::Open checked the CPUs
  std::unique_lock<std::mutex> lk(mu_);
  while (true) {
    work_cv_.wait(lk, [&] { return stop_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stopping, nothing left
    Job* j = queue_.front();
    queue_.pop_front();
    lk.unlock();
    Status s;
    try {
      s = (*j->fn)();
    } catch (const std::exception& e) {  // e.g. bad_alloc: the writer poisons the collection
      s = ResourceExhausted("inserting the batch failed: {}", e.what());
    }
    lk.lock();
    j->status = std::move(s);
    j->done = true;
    done_cv_.notify_all();
  }
}

}  // namespace strata::engine
