#pragma once
// Base64 (RFC 4648, standard alphabet, '=' padding): etcd's JSON gateway carries every key
// and value as base64 (protobuf `bytes` in proto3's JSON mapping).
//
// Pure functions; thread-safe.

#include <string>
#include <string_view>

#include "core/status.h"

namespace strata::cluster {

std::string Base64Encode(std::string_view bytes);
// InvalidArgument for a character outside the alphabet, or a length / padding that is not
// base64's. Accepts unpadded input too (proto3 JSON parsers do).
Result<std::string> Base64Decode(std::string_view text);

}  // namespace strata::cluster
