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
