#pragma once
// A local copy of every key under an etcd prefix, kept current by a watch: how each node
// follows the registry, the collections and their placement (docs/CLUSTER.md).
//
//   STRATA_ASSIGN_OR_RETURN(auto nodes, PrefixMirror::Start(etcd, "/strata/c/nodes/"));
//   auto view = nodes->view();            // shared_ptr<const PrefixMirror::View>
//   for (const auto& [key, kv] : view->kvs) ...
//
// Start reads the prefix once (it fails when etcd cannot be reached, so a node does not start
// blind); then a thread watches from the read's revision on. When the watch breaks (etcd
// restarted, the endpoint died) the thread reads the prefix again and watches from there, every
// `retry_ms` until it works; meanwhile the view stays the last one known (`view()->synced` says
// whether the watch is up). A revision compacted away is handled the same way.
//
// Thread-safe: view, revision, WaitForRevision and the destructor may be called from any thread.
// The listener runs on the mirror's thread, after each change is published; it must not call
// the destructor.

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "cluster/etcd_client.h"
#include "core/status.h"

namespace strata::cluster {

struct PrefixMirrorOptions {
  uint32_t retry_ms = 200;  // between attempts to read and watch again after a failure
  uint32_t poll_ms = 200;   // the longest a watch wait lasts before the stop flag is checked
};

class PrefixMirror {
 public:
  using Options = PrefixMirrorOptions;
  struct View {
    std::map<std::string, EtcdKeyValue> kvs;  // by full key
    int64_t revision = 0;  // every change up to this store revision is in `kvs`
    bool synced = false;   // the watch is up (false while etcd is unreachable)
  };
  using Listener = std::function<void(const View&)>;

  // `etcd` is borrowed and must outlive the mirror.
  static Result<std::unique_ptr<PrefixMirror>> Start(EtcdClient& etcd, std::string prefix,
                                                     Listener listener = {},
                                                     const PrefixMirrorOptions& options = {});
  ~PrefixMirror();  // stops the thread (within about poll_ms)
  PrefixMirror(const PrefixMirror&) = delete;
  PrefixMirror& operator=(const PrefixMirror&) = delete;

  std::shared_ptr<const View> view() const;
  const std::string& prefix() const { return prefix_; }
  // Waits until the view holds every change up to `revision`; false on timeout.
  bool WaitForRevision(int64_t revision, uint32_t timeout_ms) const;

 private:
  PrefixMirror(EtcdClient& etcd, std::string prefix, Listener listener, const Options& options);
  Status Resync();  // reads the prefix, publishes it; opens a watch from there
  void Run();
  void Publish(std::shared_ptr<View> view);

  EtcdClient& etcd_;
  const std::string prefix_;
  const Listener listener_;
  const Options options_;
  std::unique_ptr<EtcdWatch> watch_;  // the mirror thread's (and Start's, before it runs)

  mutable std::mutex mu_;
  mutable std::condition_variable changed_;
  std::shared_ptr<const View> view_;  // guarded by mu_
  bool stop_ = false;                 // guarded by mu_
  EtcdWatch* cancel_target_ = nullptr;  // guarded by mu_: the watch a stop must cancel
  std::thread thread_;
};

}  // namespace strata::cluster
