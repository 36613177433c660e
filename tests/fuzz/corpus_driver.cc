// Replays a fuzz corpus through LLVMFuzzerTestOneInput without libFuzzer, so that the default
// (gcc) build keeps the committed corpus and every crash found so far as a regression test.
//
//   protocol_fuzz_corpus_test DIR
//
// Fails when DIR holds no file, when a file cannot be read, or when a file whose name starts
// with "valid_" (a frame written by make_corpus.cc) does not decode and survive the round-trip
// checks: a seed that no longer decodes means the format changed under the corpus. An input
// that trips a check aborts the process, which fails the test with the input's name printed
// just before.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
extern "C" size_t StrataFuzzRoundTrips();

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
    return 2;
  }
  namespace fs = std::filesystem;
  std::error_code ec;
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(argv[1], ec)) {
    if (entry.is_regular_file()) files.push_back(entry.path());
  }
  if (ec) {
    std::fprintf(stderr, "%s: %s\n", argv[1], ec.message().c_str());
    return 1;
  }
  if (files.empty()) {
    std::fprintf(stderr, "%s: no corpus files\n", argv[1]);
    return 1;
  }
  std::sort(files.begin(), files.end());
  size_t bad_seeds = 0;
  for (const fs::path& path : files) {
    std::ifstream in(path, std::ios::binary);
    std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                               std::istreambuf_iterator<char>());
    if (!in.good() && !in.eof()) {
      std::fprintf(stderr, "%s: cannot read\n", path.c_str());
      return 1;
    }
    std::fprintf(stderr, "input %s (%zu bytes)\n", path.filename().c_str(), bytes.size());
    const size_t before = StrataFuzzRoundTrips();
    LLVMFuzzerTestOneInput(bytes.data(), bytes.size());
    if (path.filename().string().starts_with("valid_") && StrataFuzzRoundTrips() == before) {
      std::fprintf(stderr, "%s: a valid frame did not decode\n", path.c_str());
      ++bad_seeds;
    }
  }
  const size_t round_trips = StrataFuzzRoundTrips();
  std::printf("%zu inputs, %zu successful decodes round-tripped\n", files.size(), round_trips);
  if (round_trips == 0 || bad_seeds > 0) {
    std::fprintf(stderr,
                 "%zu valid seeds did not decode; the corpus no longer matches the format\n",
                 bad_seeds);
    return 1;
  }
  return 0;
}
