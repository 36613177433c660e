#pragma once
// A shared mutex that does not starve writers. glibc's rwlock (behind
// std::shared_mutex) prefers readers: with searches arriving back to back, a
// batch waiting to be applied could wait indefinitely. Here a writer first takes
// a turnstile that every new reader must pass, so readers already inside drain,
// the writer goes, and readers continue.
//
// Thread-safe; meets the SharedMutex requirements (use with std::unique_lock and
// std::shared_lock). Not recursive.

#include <mutex>
#include <shared_mutex>

namespace strata::engine {

class FairSharedMutex {
 public:
  void lock() {
    std::lock_guard<std::mutex> gate(turnstile_);
    rw_.lock();
  }
  bool try_lock() { return rw_.try_lock(); }
  void unlock() { rw_.unlock(); }
  void lock_shared() {
    { std::lock_guard<std::mutex> gate(turnstile_); }
    rw_.lock_shared();
  }
  bool try_lock_shared() { return rw_.try_lock_shared(); }
  void unlock_shared() { rw_.unlock_shared(); }

 private:
  std::mutex turnstile_;
  std::shared_mutex rw_;
};

}  // namespace strata::engine
