#pragma once
// The server module's spdlog logger.
//
// Thread-safe (spdlog loggers are).

#include <spdlog/spdlog.h>

namespace strata::server {

// The logger named "server": created on first use from the default logger (same
// sinks and level) and registered, so that spdlog::set_level reaches it too.
spdlog::logger& ServerLog();

}  // namespace strata::server
