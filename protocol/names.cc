// The wire protocol's names and codes: each opcode's name (OpName, IsKnownRequestOp), each
// error code's name, and the mapping between the engine's StatusCode and the wire's ErrorCode
// both ways (docs/PROTOCOL.md, "Error codes"). Pure functions; thread-safe.
#include "protocol/protocol.h"

#include <string>

#include <fmt/format.h>

namespace strata::protocol {

std::string_view OpName(Op op) {
  switch (op) {
    case Op::kHello:
      return "hello";
    case Op::kPing:
      return "ping";
    case Op::kCreateCollection:
      return "create_collection";
    case Op::kDropCollection:
      return "drop_collection";
    case Op::kListCollections:
      return "list_collections";
    case Op::kDescribeCollection:
      return "describe_collection";
    case Op::kUpsert:
      return "upsert";
    case Op::kDelete:
      return "delete";
    case Op::kGet:
      return "get";
    case Op::kSearch:
      return "search";
    case Op::kSearchBatch:
      return "search_batch";
    case Op::kExplain:
      return "explain";
    case Op::kStats:
      return "stats";
    case Op::kFlush:
      return "flush";
    case Op::kCompact:
      return "compact";
    case Op::kUpsertKeyed:
      return "upsert_keyed";
    case Op::kDeleteKeyed:
      return "delete_keyed";
    case Op::kGetKeyed:
      return "get_keyed";
    case Op::kSearchKeyed:
      return "search_keyed";
    case Op::kListKeys:
      return "list_keys";
    case Op::kSnapshot:
      return "snapshot";
    case Op::kSearchWith:
      return "search_with";
    case Op::kCreateCollectionWith:
      return "create_collection_with";
    case Op::kDescribeCollectionWith:
      return "describe_collection_with";
    case Op::kUpsertKeyedIds:
      return "upsert_keyed_ids";
    case Op::kListCollectionsWith:
      return "list_collections_with";
    case Op::kUpsertTyped:
      return "upsert_typed";
    case Op::kSearchTyped:
      return "search_typed";
    case Op::kShardFiles:
      return "shard_files";
    case Op::kShardFileRead:
      return "shard_file_read";
    case Op::kShardFilesDone:
      return "shard_files_done";
    case Op::kError:
      return "error";
  }
  return "unknown";
}

bool IsKnownRequestOp(uint16_t opcode) {
  // The range has holes (opcodes left for requests not defined here): those are unknown too.
  return opcode >= static_cast<uint16_t>(Op::kHello) &&
         opcode <= static_cast<uint16_t>(kLastRequestOp) && OpName(static_cast<Op>(opcode)) != "unknown";
}

std::string_view ErrorCodeName(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument:
      return "InvalidArgument";
    case ErrorCode::kNotFound:
      return "NotFound";
    case ErrorCode::kAlreadyExists:
      return "AlreadyExists";
    case ErrorCode::kCorruption:
      return "Corruption";
    case ErrorCode::kIOError:
      return "IOError";
    case ErrorCode::kOutOfRange:
      return "OutOfRange";
    case ErrorCode::kUnimplemented:
      return "Unimplemented";
    case ErrorCode::kResourceExhausted:
      return "ResourceExhausted";
    case ErrorCode::kCancelled:
      return "Cancelled";
    case ErrorCode::kInternal:
      return "Internal";
    case ErrorCode::kMalformed:
      return "Malformed";
    case ErrorCode::kUnknownOp:
      return "UnknownOp";
    case ErrorCode::kUnauthenticated:
      return "Unauthenticated";
    case ErrorCode::kBusy:
      return "Busy";
    case ErrorCode::kTooLarge:
      return "TooLarge";
    case ErrorCode::kShuttingDown:
      return "ShuttingDown";
  }
  return "Unknown";
}

ErrorCode ErrorCodeFromStatus(StatusCode code) {
  switch (code) {
    case StatusCode::kInvalidArgument:
      return ErrorCode::kInvalidArgument;
    case StatusCode::kNotFound:
      return ErrorCode::kNotFound;
    case StatusCode::kAlreadyExists:
      return ErrorCode::kAlreadyExists;
    case StatusCode::kCorruption:
      return ErrorCode::kCorruption;
    case StatusCode::kIOError:
      return ErrorCode::kIOError;
    case StatusCode::kOutOfRange:
      return ErrorCode::kOutOfRange;
    case StatusCode::kUnimplemented:
      return ErrorCode::kUnimplemented;
    case StatusCode::kResourceExhausted:
      return ErrorCode::kResourceExhausted;
    case StatusCode::kCancelled:
      return ErrorCode::kCancelled;
    case StatusCode::kInternal:
      return ErrorCode::kInternal;
    case StatusCode::kOk:
      break;  // an OK status is not an error; treat it as a server bug
  }
  return ErrorCode::kInternal;
}

Status StatusFromError(ErrorCode code, std::string_view message) {
  StatusCode status;
  switch (code) {
    // 1..10 mirror StatusCode: the code itself says what happened, the text is kept as is.
    case ErrorCode::kInvalidArgument:
      return Status(StatusCode::kInvalidArgument, std::string(message));
    case ErrorCode::kNotFound:
      return Status(StatusCode::kNotFound, std::string(message));
    case ErrorCode::kAlreadyExists:
      return Status(StatusCode::kAlreadyExists, std::string(message));
    case ErrorCode::kCorruption:
      return Status(StatusCode::kCorruption, std::string(message));
    case ErrorCode::kIOError:
      return Status(StatusCode::kIOError, std::string(message));
    case ErrorCode::kOutOfRange:
      return Status(StatusCode::kOutOfRange, std::string(message));
    case ErrorCode::kUnimplemented:
      return Status(StatusCode::kUnimplemented, std::string(message));
    case ErrorCode::kResourceExhausted:
      return Status(StatusCode::kResourceExhausted, std::string(message));
    case ErrorCode::kCancelled:
      return Status(StatusCode::kCancelled, std::string(message));
    case ErrorCode::kInternal:
      return Status(StatusCode::kInternal, std::string(message));
    // Server-only codes: the closest StatusCode, and the code's name in front of the text.
    case ErrorCode::kMalformed:
      status = StatusCode::kInvalidArgument;
      break;
    case ErrorCode::kUnknownOp:
      status = StatusCode::kUnimplemented;
      break;
    case ErrorCode::kUnauthenticated:
      status = StatusCode::kInvalidArgument;
      break;
    case ErrorCode::kBusy:
      status = StatusCode::kResourceExhausted;
      break;
    case ErrorCode::kTooLarge:
      status = StatusCode::kOutOfRange;
      break;
    case ErrorCode::kShuttingDown:
      status = StatusCode::kCancelled;
      break;
    default:
      return Status(StatusCode::kInternal,
                    fmt::format("error code {}: {}", static_cast<uint16_t>(code), message));
  }
  return Status(status, fmt::format("{}: {}", ErrorCodeName(code), message));
}

}  // namespace strata::protocol
