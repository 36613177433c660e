#include "cluster/prefix_mirror.h"

#include <chrono>

#include "cluster/log.h"

namespace strata::cluster {

spdlog::logger& ClusterLog() {
  static const std::shared_ptr<spdlog::logger> logger = [] {
    if (auto existing = spdlog::get("cluster")) return existing;
    auto l = spdlog::default_logger()->clone("cluster");
    try {
      spdlog::register_logger(l);
    } catch (const spdlog::spdlog_ex&) {
      if (auto existing = spdlog::get("cluster")) return existing;
    }
    return l;
  }();
  return *logger;
}

PrefixMirror::PrefixMirror(EtcdClient& etcd, std::string prefix, Listener listener,
                           const Options& options)
    : etcd_(etcd), prefix_(std::move(prefix)), listener_(std::move(listener)), options_(options) {}

Result<std::unique_ptr<PrefixMirror>> PrefixMirror::Start(EtcdClient& etcd, std::string prefix,
                                                          Listener listener,
                                                          const Options& options) {
  if (prefix.empty()) return Error(InvalidArgument("PrefixMirror: the prefix must not be empty"));
  std::unique_ptr<PrefixMirror> m(
      new PrefixMirror(etcd, std::move(prefix), std::move(listener), options));
  STRATA_RETURN_IF_ERROR(m->Resync());
  m->thread_ = std::thread([p = m.get()] { p->Run(); });
  return m;
}

PrefixMirror::~PrefixMirror() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
    if (cancel_target_ != nullptr) cancel_target_->Cancel();
  }
  changed_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::shared_ptr<const PrefixMirror::View> PrefixMirror::view() const {
  std::lock_guard lock(mu_);
  return view_;
}

bool PrefixMirror::WaitForRevision(int64_t revision, uint32_t timeout_ms) const {
  std::unique_lock lock(mu_);
  return changed_.wait_for(lock, std::chrono::milliseconds(timeout_ms),
                           [&] { return view_ && view_->revision >= revision; });
}

void PrefixMirror::Publish(std::shared_ptr<View> view) {
  {
    std::lock_guard lock(mu_);
    view_ = view;
  }
  changed_.notify_all();
  if (listener_) listener_(*view);
}

Status PrefixMirror::Resync() {
  STRATA_ASSIGN_OR_RETURN(EtcdRangeResult range, etcd_.GetPrefix(prefix_));
  auto view = std::make_shared<View>();
  for (EtcdKeyValue& kv : range.kvs) view->kvs.emplace(kv.key, std::move(kv));
  view->revision = range.revision;
  STRATA_ASSIGN_OR_RETURN(auto watch,
                          EtcdWatch::Open(etcd_, prefix_, PrefixRangeEnd(prefix_), range.revision + 1));
  {
    std::lock_guard lock(mu_);
    if (stop_) return Cancelled("stopping");
    watch_ = std::move(watch);
    cancel_target_ = watch_.get();
  }
  view->synced = true;
  Publish(std::move(view));
  return Status::Ok();
}

void PrefixMirror::Run() {
  bool logged_failure = false;
  for (;;) {
    {
      std::lock_guard lock(mu_);
      if (stop_) return;
    }
    if (!watch_) {
      if (Status s = Resync(); !s.ok()) {
        if (s.code() == StatusCode::kCancelled) return;
        if (!logged_failure) {
          ClusterLog().warn("watching {}: {} (retrying every {} ms)", prefix_, s.ToString(),
                            options_.retry_ms);
          logged_failure = true;
        }
        std::unique_lock lock(mu_);
        changed_.wait_for(lock, std::chrono::milliseconds(options_.retry_ms), [&] { return stop_; });
        continue;
      }
      if (logged_failure) ClusterLog().info("watching {} again", prefix_);
      logged_failure = false;
      continue;
    }
    auto batch = watch_->Next(options_.poll_ms);
    if (!batch) {
      if (batch.error().code() == StatusCode::kCancelled) return;
      ClusterLog().warn("the watch on {} ended: {}", prefix_, batch.error().ToString());
      {
        std::lock_guard lock(mu_);
        cancel_target_ = nullptr;
      }
      watch_.reset();
      // Keep the last view, marked as no longer following etcd.
      auto stale = std::make_shared<View>(*view());
      stale->synced = false;
      Publish(std::move(stale));
      continue;
    }
    if (!batch->has_value()) continue;
    auto next = std::make_shared<View>(*view());
    for (EtcdEvent& e : (*batch)->events) {
      if (e.type == EtcdEvent::Type::kDelete) {
        next->kvs.erase(e.kv.key);
      } else {
        std::string key = e.kv.key;
        next->kvs[key] = std::move(e.kv);
      }
    }
    next->revision = (*batch)->revision;
    Publish(std::move(next));
  }
}

}  // namespace strata::cluster
