# Client suites (included by tests/CMakeLists.txt; paths relative to tests/).
# client_test runs the client against a scripted fake server and links strata_client only.
strata_test(client_test SOURCES client/client_test.cc LIBS strata_client LABELS unit)
# measure_test: recall and latency summaries of client/measure, without a server.
strata_test(measure_test SOURCES client/measure_test.cc LIBS strata_client_measure LABELS unit)
# client_integration_test starts a real server (strata_server over strata_engine) on an
# ephemeral loopback port, and runs the strata-cli binary against it; only when the server
# is part of the build.
if(TARGET strata_server)
  find_package(nlohmann_json REQUIRED)
  strata_test(client_integration_test
    SOURCES client/client_integration_test.cc client/cli_test.cc client/cli_attributes_test.cc
            client/keys_integration_test.cc client/typed_vectors_test.cc
    LIBS strata_client strata_client_measure strata_server strata_engine strata_storage
         nlohmann_json::nlohmann_json
    LABELS unit)
  target_compile_definitions(client_integration_test PRIVATE
    STRATA_CLI_PATH="$<TARGET_FILE:strata-cli>" STRATA_SERVER_BINARY="$<TARGET_FILE:strata-server>")
  add_dependencies(client_integration_test strata-cli strata-server)
  # Snapshots end to end (issue 13): the snapshot request while a client writes, refusals,
  # RestoreSnapshot and the strata-cli / strata binaries.
  if(TARGET strata_tools_lib)
    strata_test(snapshot_integration_test
      SOURCES client/snapshot_integration_test.cc
      LIBS strata_client strata_server strata_engine strata_tools_lib nlohmann_json::nlohmann_json
      LABELS unit)
    target_compile_definitions(snapshot_integration_test PRIVATE
      STRATA_CLI_PATH="$<TARGET_FILE:strata-cli>" STRATA_BINARY="$<TARGET_FILE:strata>")
    add_dependencies(snapshot_integration_test strata-cli strata)
  endif()
endif()
# GCC 12 took a std::optional<ElementType> read in strata-cli's search command for maybe
# uninitialized (-Wmaybe-uninitialized, from -O1 up; the ASan build is -O0 and never saw it):
# the file compiles at -O1 with that warning an error (about 10 s).
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
  add_test(NAME cli_search_compiles_without_maybe_uninitialized
    COMMAND ${CMAKE_CXX_COMPILER} -std=c++23 -O1 -Wall -Wextra -Wno-unknown-pragmas
            -Werror=maybe-uninitialized -DSTRATA_VERSION="test" -I${PROJECT_SOURCE_DIR}
            -I${CLI11_INCLUDE_DIR} -c ${PROJECT_SOURCE_DIR}/client/cli_search.cc -o /dev/null)
  set_tests_properties(cli_search_compiles_without_maybe_uninitialized PROPERTIES LABELS unit)
endif()
