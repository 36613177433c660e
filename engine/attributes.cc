#include "engine/attributes.h"
#include "engine/attribute_codec.h"

#include <cmath>
#include <unordered_set>

namespace strata::engine {
namespace {

enum Kind : uint8_t { kInt = 0, kDouble = 1, kString = 2, kTags = 3 };

}  // namespace

Status ValidateAttributes(const Attributes& attributes) {
  if (attributes.size() > kMaxAttributes) {
    return InvalidArgument("{} attributes given, at most {} allowed", attributes.size(), kMaxAttributes);
  }
  std::unordered_set<std::string_view> names;
  for (const Attribute& a : attributes) {
    if (a.name.empty() || a.name.size() > kMaxAttributeName) {
      return InvalidArgument("attribute name '{}' must have 1 to {} bytes", a.name, kMaxAttributeName);
    }
    if (!names.insert(a.name).second) return InvalidArgument("attribute '{}' is given twice", a.name);
    if (const double* d = std::get_if<double>(&a.value); d && !std::isfinite(*d)) {
      return InvalidArgument("attribute '{}' is not a finite number", a.name);
    }
    if (const std::string* s = std::get_if<std::string>(&a.value); s && s->size() > kMaxAttributeString) {
      return InvalidArgument("attribute '{}' has {} bytes, at most {} allowed", a.name, s->size(),
                             kMaxAttributeString);
    }
    if (const TagList* t = std::get_if<TagList>(&a.value)) {
      if (t->size() > kMaxTags) {
        return InvalidArgument("attribute '{}' has {} tags, at most {} allowed", a.name, t->size(), kMaxTags);
      }
      for (const std::string& tag : *t) {
        if (tag.size() > kMaxAttributeString) {
          return InvalidArgument("a tag of attribute '{}' has {} bytes, at most {} allowed", a.name,
                                 tag.size(), kMaxAttributeString);
        }
      }
    }
  }
  return Status::Ok();
}

void EncodeAttributes(const Attributes& attributes, ByteWriter& out) {
  out.Put<uint16_t>(uint16_t(attributes.size()));
  for (const Attribute& a : attributes) {
    out.PutString(a.name);
    switch (a.value.index()) {
      case 0:
        out.Put<uint8_t>(kInt);
        out.Put<int64_t>(std::get<int64_t>(a.value));
        break;
      case 1:
        out.Put<uint8_t>(kDouble);
        out.Put<double>(std::get<double>(a.value));
        break;
      case 2:
        out.Put<uint8_t>(kString);
        out.PutString(std::get<std::string>(a.value));
        break;
      default: {
        out.Put<uint8_t>(kTags);
        const TagList& tags = std::get<TagList>(a.value);
        out.Put<uint32_t>(uint32_t(tags.size()));
        for (const std::string& t : tags) out.PutString(t);
      }
    }
  }
}

Status DecodeAttributes(ByteReader& in, Attributes& out) {
  uint16_t count = 0;
  STRATA_RETURN_IF_ERROR(in.Get(count, "attribute count"));
  if (count > kMaxAttributes) return Corruption("attribute count {} exceeds {}", count, kMaxAttributes);
  out.clear();
  out.reserve(count);
  for (uint16_t i = 0; i < count; ++i) {
    Attribute a;
    STRATA_RETURN_IF_ERROR(in.GetString(a.name, kMaxAttributeName, "attribute name"));
    uint8_t kind = 0;
    STRATA_RETURN_IF_ERROR(in.Get(kind, "attribute kind"));
    switch (kind) {
      case kInt: {
        int64_t v = 0;
        STRATA_RETURN_IF_ERROR(in.Get(v, "int attribute"));
        a.value = v;
        break;
      }
      case kDouble: {
        double v = 0;
        STRATA_RETURN_IF_ERROR(in.Get(v, "double attribute"));
        a.value = v;
        break;
      }
      case kString: {
        std::string v;
        STRATA_RETURN_IF_ERROR(in.GetString(v, kMaxAttributeString, "string attribute"));
        a.value = std::move(v);
        break;
      }
      case kTags: {
        uint32_t n = 0;
        STRATA_RETURN_IF_ERROR(in.Get(n, "tag count"));
        if (n > kMaxTags) return Corruption("tag count {} exceeds {}", n, kMaxTags);
        TagList tags(n);
        for (auto& t : tags) STRATA_RETURN_IF_ERROR(in.GetString(t, kMaxAttributeString, "tag"));
        a.value = std::move(tags);
        break;
      }
      default:
        return Corruption("attribute '{}' has unknown kind {}", a.name, kind);
    }
    out.push_back(std::move(a));
  }
  return Status::Ok();
}

}  // namespace strata::engine
