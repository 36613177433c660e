#pragma once
// JSON helpers shared by etcd_client.cc and etcd_watch.cc (internal to cluster/): the proto3
// JSON mapping of etcd's messages -- int64 as strings, bytes as base64, defaults left out.

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>

#include "cluster/etcd_client.h"
#include "core/status.h"

namespace strata::cluster::internal {

// A field holding an int64 ("123" or 123); 0 when absent. InvalidArgument when it is neither.
Result<int64_t> JsonInt(const nlohmann::json& object, std::string_view field);
// A bytes field (base64); "" when absent.
Result<std::string> JsonBytes(const nlohmann::json& object, std::string_view field);
Result<EtcdKeyValue> ParseKeyValue(const nlohmann::json& kv);
// etcd's error reply ({"error", "message", "code"}) as a Status naming `where`; OK when `reply`
// is not one.
Status EtcdErrorStatus(const nlohmann::json& reply, std::string_view where);
// The gRPC code of an error reply; 0 when `reply` is not one.
int EtcdErrorCode(const nlohmann::json& reply);

}  // namespace strata::cluster::internal
