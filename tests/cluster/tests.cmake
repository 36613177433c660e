# Cluster suites (included by tests/CMakeLists.txt; paths relative to tests/). They start a real
# etcd (Debian's etcd-server, installed by scripts/setup.sh) on free loopback ports.
find_program(STRATA_ETCD etcd)
if(NOT STRATA_ETCD)
  message(WARNING "etcd not found (Debian etcd-server; scripts/setup.sh installs it): "
                  "the cluster tests will fail")
  set(STRATA_ETCD etcd)
endif()
strata_test(etcd_client_test SOURCES cluster/etcd_client_test.cc LIBS strata_cluster LABELS unit)
target_compile_definitions(etcd_client_test PRIVATE STRATA_ETCD_BINARY="${STRATA_ETCD}")
