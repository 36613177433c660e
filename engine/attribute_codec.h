#pragma once
// Binary encoding of attributes, for the engine's own records (WAL batches,
// segment files). Internal: not part of the public header.
//
// Encoding: u16 count, then per attribute: name (u32 length + bytes), u8 kind
// (0 int64, 1 double, 2 string, 3 tags), the value (tags: u32 count + strings).

#include "core/status.h"
#include "engine/attributes.h"
#include "engine/codec.h"

namespace strata::engine {

void EncodeAttributes(const Attributes& attributes, ByteWriter& out);
// Corruption naming the field when the bytes do not hold valid attributes.
Status DecodeAttributes(ByteReader& in, Attributes& out);

}  // namespace strata::engine
