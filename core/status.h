#pragma once
// Status and Result<T>: how errors cross module boundaries in Strata.
//
// A Status carries a code and a message that names the file, field or argument
// at fault. Result<T> is std::expected<T, Status>. Exceptions never cross a
// public API. Immutable value types; safe to share between threads.

#include <concepts>
#include <expected>
#include <string>
#include <string_view>
#include <utility>

#include <fmt/core.h>

namespace strata {

enum class StatusCode : int {
  kOk = 0,
  kInvalidArgument,
  kNotFound,
  kAlreadyExists,
  kCorruption,
  kIOError,
  kOutOfRange,
  kUnimplemented,
  kResourceExhausted,
  kCancelled,
  kInternal,
};

std::string_view StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  // Lets STRATA_RETURN_IF_ERROR / STRATA_ASSIGN_OR_RETURN (which return
  // std::unexpected<Status>) work in functions that return a plain Status.
  template <typename U>
    requires std::same_as<U, std::unexpected<Status>>
  Status(U u) : Status(std::move(u.error())) {}

  static Status Ok() { return Status(); }
  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "Corruption: data/x.fbin: ..." or "OK".
  std::string ToString() const;

  // Returns a copy with `context + ": "` prepended to the message.
  Status WithContext(std::string_view context) const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

template <typename T>
using Result = std::expected<T, Status>;

// Factories: Status err = InvalidArgument("dim {} must be > 0", dim);
#define STRATA_DEFINE_STATUS_FACTORY(Name)                                      \
  template <typename... Args>                                                   \
  Status Name(fmt::format_string<Args...> format, Args&&... args) {             \
    return Status(StatusCode::k##Name, fmt::format(format, std::forward<Args>(args)...)); \
  }
STRATA_DEFINE_STATUS_FACTORY(InvalidArgument)
STRATA_DEFINE_STATUS_FACTORY(NotFound)
STRATA_DEFINE_STATUS_FACTORY(AlreadyExists)
STRATA_DEFINE_STATUS_FACTORY(Corruption)
STRATA_DEFINE_STATUS_FACTORY(IOError)
STRATA_DEFINE_STATUS_FACTORY(OutOfRange)
STRATA_DEFINE_STATUS_FACTORY(Unimplemented)
STRATA_DEFINE_STATUS_FACTORY(ResourceExhausted)
STRATA_DEFINE_STATUS_FACTORY(Cancelled)
STRATA_DEFINE_STATUS_FACTORY(Internal)
#undef STRATA_DEFINE_STATUS_FACTORY

// std::unexpected shorthand so that `return Error(status);` reads well in Result functions.
inline std::unexpected<Status> Error(Status s) { return std::unexpected<Status>(std::move(s)); }

namespace internal {
inline const Status& ToStatus(const Status& s) { return s; }
template <typename T>
Status ToStatus(const Result<T>& r) {
  return r.has_value() ? Status() : r.error();
}
[[noreturn]] void CheckFailed(const char* expr, const char* file, int line);
}  // namespace internal

}  // namespace strata

#define STRATA_CONCAT_INNER(a, b) a##b
#define STRATA_CONCAT(a, b) STRATA_CONCAT_INNER(a, b)

// Works in functions returning Status or Result<T>.
#define STRATA_RETURN_IF_ERROR(expr)                                        \
  do {                                                                      \
    ::strata::Status strata_status_ = ::strata::internal::ToStatus((expr)); \
    if (!strata_status_.ok()) return ::strata::Error(std::move(strata_status_)); \
  } while (0)

#define STRATA_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr)     \
  auto tmp = (expr);                                     \
  if (!tmp.has_value()) return ::strata::Error(std::move(tmp).error()); \
  lhs = std::move(*tmp)

#define STRATA_ASSIGN_OR_RETURN(lhs, expr) \
  STRATA_ASSIGN_OR_RETURN_IMPL(STRATA_CONCAT(strata_result_, __LINE__), lhs, expr)

// Programmer errors only: user input never reaches a CHECK.
#define STRATA_CHECK(cond) \
  ((cond) ? (void)0 : ::strata::internal::CheckFailed(#cond, __FILE__, __LINE__))
