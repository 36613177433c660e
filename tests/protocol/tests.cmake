# Wire protocol suites (included by tests/CMakeLists.txt; paths relative to tests/).

strata_test(protocol_test SOURCES protocol/protocol_test.cc LIBS strata_protocol LABELS unit)
strata_test(resp_test SOURCES protocol/resp_test.cc LIBS strata_protocol LABELS unit)

# The fuzz target, built by gcc with a plain main() that replays the committed corpus: every
# seed and every crash the fuzzer found stays a regression test of the default suite.
add_executable(protocol_fuzz_corpus_test fuzz/protocol_fuzz.cc fuzz/corpus_driver.cc)
target_link_libraries(protocol_fuzz_corpus_test PRIVATE strata_protocol)
target_include_directories(protocol_fuzz_corpus_test PRIVATE ${PROJECT_SOURCE_DIR})
add_test(NAME protocol_fuzz_corpus_test
  COMMAND protocol_fuzz_corpus_test ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/corpus/protocol)
set_tests_properties(protocol_fuzz_corpus_test PROPERTIES LABELS unit TIMEOUT 120)

# The same for the RESP request parser (tests/fuzz/resp_fuzz.cc; corpus written by hand, see
# tests/fuzz/corpus/resp/README).
add_executable(resp_fuzz_corpus_test fuzz/resp_fuzz.cc fuzz/corpus_driver.cc)
target_link_libraries(resp_fuzz_corpus_test PRIVATE strata_protocol)
target_include_directories(resp_fuzz_corpus_test PRIVATE ${PROJECT_SOURCE_DIR})
add_test(NAME resp_fuzz_corpus_test
  COMMAND resp_fuzz_corpus_test ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/corpus/resp)
set_tests_properties(resp_fuzz_corpus_test PROPERTIES LABELS unit TIMEOUT 120)

# Writes the seed corpus (run by hand when the format changes; its output is committed):
#   build/<dir>/tests/protocol_make_corpus tests/fuzz/corpus/protocol
add_executable(protocol_make_corpus fuzz/make_corpus.cc)
target_link_libraries(protocol_make_corpus PRIVATE strata_protocol)
target_include_directories(protocol_make_corpus PRIVATE ${PROJECT_SOURCE_DIR})

# libFuzzer build (scripts/fuzz.sh): clang only, off by default so that the gcc build never
# needs clang.
option(STRATA_FUZZ "Build the libFuzzer targets (needs clang)" OFF)
if(STRATA_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "STRATA_FUZZ needs clang (e.g. -DCMAKE_CXX_COMPILER=clang++-16), "
                        "not ${CMAKE_CXX_COMPILER_ID}")
  endif()
  # clang 16 with libstdc++ 12 hides std::expected behind __cpp_concepts >= 202002L, which
  # clang 16 does not claim yet; everything it compiles here needs the definition.
  set(STRATA_FUZZ_EXPECTED_FIX -U__cpp_concepts -D__cpp_concepts=202002L)
  # The code under test gets coverage instrumentation and the sanitizers; only the fuzz target
  # links libFuzzer's main().
  foreach(lib strata_core strata_api strata_protocol)
    target_compile_options(${lib} PRIVATE ${STRATA_FUZZ_EXPECTED_FIX}
      -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
      -fno-omit-frame-pointer)
  endforeach()
  foreach(target protocol_fuzz resp_fuzz)
    add_executable(${target} fuzz/${target}.cc)
    target_compile_options(${target} PRIVATE ${STRATA_FUZZ_EXPECTED_FIX}
      -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
    target_link_options(${target} PRIVATE -fsanitize=fuzzer,address,undefined)
    target_link_libraries(${target} PRIVATE strata_protocol)
    target_include_directories(${target} PRIVATE ${PROJECT_SOURCE_DIR})
  endforeach()
endif()
