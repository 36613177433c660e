#pragma once
// Shared-secret checks for the hello handshake.
//
// Free functions; safe to call from any thread.

#include <string_view>

namespace strata::server {

// True when `given` equals `expected`. The time taken depends only on the longer
// of the two lengths, never on where they first differ: every byte position up to
// that length is compared and the differences are OR-ed together, with no early
// exit (a remote client cannot find the token one byte at a time by timing).
bool TokensEqual(std::string_view expected, std::string_view given);

}  // namespace strata::server
