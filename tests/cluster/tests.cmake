# Cluster suites (included by tests/CMakeLists.txt; paths relative to tests/). They start a real
# etcd (Debian's etcd-server, installed by scripts/setup.sh) on free loopback ports.
find_program(STRATA_ETCD etcd)
if(NOT STRATA_ETCD)
  message(WARNING "etcd not found (Debian etcd-server; scripts/setup.sh installs it): "
                  "the cluster tests will fail")
  set(STRATA_ETCD etcd)
endif()
strata_test(cluster_model_test SOURCES cluster/model_test.cc LIBS strata_cluster LABELS unit)
# ShardGate's write fence over a real engine (catch_up.h).
strata_test(cluster_shard_gate_test SOURCES cluster/shard_gate_test.cc LIBS strata_cluster_service strata_server strata::xxhash
  LABELS unit)
strata_test(etcd_client_test SOURCES cluster/etcd_client_test.cc LIBS strata_cluster LABELS unit)
target_compile_definitions(etcd_client_test PRIVATE STRATA_ETCD_BINARY="${STRATA_ETCD}")
# Threads (lease renewal, election, the registry mirror): run under ThreadSanitizer (scripts/test.sh).
strata_test(cluster_node_test SOURCES cluster/node_test.cc LIBS strata_cluster LABELS concurrent)
target_compile_definitions(cluster_node_test PRIVATE STRATA_ETCD_BINARY="${STRATA_ETCD}")
# Real strata-server processes joining a cluster through a real etcd (a few seconds each).
strata_test(cluster_server_test SOURCES cluster/cluster_server_test.cc
  LIBS strata_cluster strata_client nlohmann_json::nlohmann_json LABELS unit)
target_compile_definitions(cluster_server_test PRIVATE STRATA_ETCD_BINARY="${STRATA_ETCD}"
  STRATA_SERVER_BINARY="$<TARGET_FILE:strata-server>" STRATA_CLI_BINARY="$<TARGET_FILE:strata-cli>")
add_dependencies(cluster_server_test strata-server strata-cli)
# ClusterRouter over 3 real nodes: replicated writes, merged searches, recall against one node,
# a replica SIGKILLed (about 10 s).
strata_test(cluster_router_test SOURCES cluster/router_test.cc
  LIBS strata_cluster_router LABELS unit)
target_compile_definitions(cluster_router_test PRIVATE STRATA_ETCD_BINARY="${STRATA_ETCD}"
  STRATA_SERVER_BINARY="$<TARGET_FILE:strata-server>")
add_dependencies(cluster_router_test strata-server)
# Issue 19's recall test on Fashion-MNIST (a subset under ctest: recall_test.cc says why).
strata_test(cluster_recall_test SOURCES cluster/recall_test.cc LIBS strata_cluster strata_client
  LABELS unit)
target_compile_definitions(cluster_recall_test PRIVATE STRATA_ETCD_BINARY="${STRATA_ETCD}"
  STRATA_SERVER_BINARY="$<TARGET_FILE:strata-server>" STRATA_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
add_dependencies(cluster_recall_test strata-server)
# A cluster collection's EXPLAIN per shard and node, partial replies with a SIGSTOPped shard,
# and the drop of a cluster collection, through plain clients of 3 real nodes (about 15 s).
strata_test(cluster_shard_reply_test SOURCES cluster/shard_reply_test.cc
  LIBS strata_cluster_router strata_client LABELS unit)
target_compile_definitions(cluster_shard_reply_test PRIVATE STRATA_ETCD_BINARY="${STRATA_ETCD}"
  STRATA_SERVER_BINARY="$<TARGET_FILE:strata-server>" STRATA_CLI_BINARY="$<TARGET_FILE:strata-cli>")
add_dependencies(cluster_shard_reply_test strata-server strata-cli)
# Re-replication: a SIGKILLed replica's shard given to another of 4 real nodes, which catches up
# (about 10 s).
strata_test(cluster_rereplicate_test SOURCES cluster/rereplicate_test.cc
  LIBS strata_cluster_router strata_client LABELS unit)
target_compile_definitions(cluster_rereplicate_test PRIVATE STRATA_ETCD_BINARY="${STRATA_ETCD}"
  STRATA_SERVER_BINARY="$<TARGET_FILE:strata-server>" STRATA_CLI_BINARY="$<TARGET_FILE:strata-cli>")
add_dependencies(cluster_rereplicate_test strata-server strata-cli)
