# Server suites (included by tests/CMakeLists.txt; paths relative to tests/).
strata_test(server_test
  SOURCES server/config_test.cc server/metrics_test.cc server/server_test.cc
  LIBS strata_server strata_protocol strata_engine spdlog::spdlog LABELS unit)
target_include_directories(server_test PRIVATE ${CLI11_INCLUDE_DIR})
target_compile_definitions(server_test PRIVATE STRATA_SOURCE_DIR="${PROJECT_SOURCE_DIR}")

# SIGKILL the real strata-server binary while it acknowledges writes (labelled crash).
strata_test(server_crash_test
  SOURCES server/crash_test.cc
  LIBS strata_protocol strata_core LABELS crash)
target_compile_definitions(server_crash_test PRIVATE STRATA_SERVER_BINARY="$<TARGET_FILE:strata-server>")
add_dependencies(server_crash_test strata-server)

# The RESP listener (docs/RESP.md): Redis FILTER translation and JSON attributes, then
# redis-cli (Debian's redis-tools) against the real strata-server binary, every reply exact.
strata_test(resp_server_test SOURCES server/resp_filter_test.cc server/resp_listener_test.cc
  LIBS strata_server strata_engine spdlog::spdlog LABELS unit)
find_program(STRATA_REDIS_CLI redis-cli)
if(STRATA_REDIS_CLI)
  add_test(NAME resp_cli_test
    COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/server/resp_cli_test.sh $<TARGET_FILE:strata-server>)
  set_tests_properties(resp_cli_test PROPERTIES LABELS unit TIMEOUT 300)
endif()
