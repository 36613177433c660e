#pragma once
// Replaces the program's global allocation functions with malloc-based ones that count what a
// thread allocates while counting is on, and abort when a limit is passed. Lets the protocol
// tests and the fuzzer assert that decoders allocate only in proportion to their input.
//
// Include in exactly ONE translation unit of a program (it defines the replaceable functions).
// Every form is defined, so that no sanitizer runtime's own definitions are mixed with these.
// Counters are thread_local: thread-compatible, and each thread counts only its own allocations.

#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <new>

namespace strata::protocol::testing {

struct AllocationCounter {
  bool counting = false;
  size_t bytes = 0;    // sum of all sizes requested while counting
  size_t largest = 0;  // the largest single request while counting
  size_t limit = 0;    // abort once `bytes` passes it; 0: no limit
};
inline thread_local AllocationCounter g_allocations;

// Counts the allocations of one scope (not nestable).
class CountAllocations {
 public:
  explicit CountAllocations(size_t limit = 0) {
    g_allocations = AllocationCounter{true, 0, 0, limit};
  }
  ~CountAllocations() { g_allocations.counting = false; }
  CountAllocations(const CountAllocations&) = delete;
  CountAllocations& operator=(const CountAllocations&) = delete;
  size_t bytes() const { return g_allocations.bytes; }
  size_t largest() const { return g_allocations.largest; }
};

inline void NoteAllocation(size_t n) {
  AllocationCounter& c = g_allocations;
  if (!c.counting) return;
  c.bytes += n;
  if (n > c.largest) c.largest = n;
  if (c.limit != 0 && c.bytes > c.limit) {
    c.counting = false;
    std::fprintf(stderr,
                 "allocation limit passed: %zu bytes allocated (limit %zu), last request %zu\n",
                 c.bytes, c.limit, n);
    std::abort();
  }
}

inline void* CountedAlloc(size_t n) {
  NoteAllocation(n);
  void* p = std::malloc(n == 0 ? 1 : n);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

inline void* CountedAlignedAlloc(size_t n, std::align_val_t align) {
  NoteAllocation(n);
  const size_t a = static_cast<size_t>(align);
  void* p = std::aligned_alloc(a, (n + a - 1) / a * a + (n == 0 ? a : 0));
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

}  // namespace strata::protocol::testing

void* operator new(size_t n) { return strata::protocol::testing::CountedAlloc(n); }
void* operator new[](size_t n) { return strata::protocol::testing::CountedAlloc(n); }
void* operator new(size_t n, const std::nothrow_t&) noexcept {
  try {
    return strata::protocol::testing::CountedAlloc(n);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](size_t n, const std::nothrow_t&) noexcept {
  try {
    return strata::protocol::testing::CountedAlloc(n);
  } catch (...) {
    return nullptr;
  }
}
void* operator new(size_t n, std::align_val_t a) {
  return strata::protocol::testing::CountedAlignedAlloc(n, a);
}
void* operator new[](size_t n, std::align_val_t a) {
  return strata::protocol::testing::CountedAlignedAlloc(n, a);
}
void* operator new(size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  try {
    return strata::protocol::testing::CountedAlignedAlloc(n, a);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  try {
    return strata::protocol::testing::CountedAlignedAlloc(n, a);
  } catch (...) {
    return nullptr;
  }
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
