#pragma once
// The cluster module's spdlog logger ("cluster"): created on first use from the default logger
// (same sinks and level) and registered, so that spdlog::set_level reaches it too.
//
// Thread-safe (spdlog loggers are).

#include <spdlog/spdlog.h>

namespace strata::cluster {

spdlog::logger& ClusterLog();

}  // namespace strata::cluster
