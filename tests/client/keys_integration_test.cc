// Records by string key through a live server: the client's keyed calls (upsert_keyed,
// get_keyed, search_keyed, delete_keyed, list_keys) and strata-cli's --key / --keys /
// keys, against a real server over a real engine.

#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/core.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "storage/dataset_io.h"
#include "tests/client/integration_util.h"

namespace strata::client {
namespace {

using testing::ServerFixture;
using testing::VectorFor;
using Json = nlohmann::json;
constexpr uint32_t kDim = 4;

class KeysTest : public ServerFixture {
 protected:
  void Create(Client& c, const std::string& name) {
    CollectionSpec spec;
    spec.name = name;
    spec.dim = kDim;
    ASSERT_TRUE(c.CreateCollection(spec).ok());
  }
  struct Run {
    int rc = -1;
    std::string out, err;
  };
  Run Cli(const std::string& args) {
    const auto out = dir_ / "keys_cli.out";
    const auto err = dir_ / "keys_cli.err";
    const std::string cmd = fmt::format("{} {} --port {} >{} 2>{}", STRATA_CLI_PATH, args, port(), out.string(),
                                        err.string());
    const int status = std::system(cmd.c_str());
    Run r;
    r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    auto read = [](const std::filesystem::path& p) {
      std::ifstream in(p);
      std::stringstream s;
      s << in.rdbuf();
      return s.str();
    };
    r.out = read(out);
    r.err = read(err);
    return r;
  }
};

Record Keyed(const std::string& key, std::vector<float> v, Attributes attributes = {}) {
  Record r;
  r.key = key;
  r.vector = std::move(v);
  r.attributes = std::move(attributes);
  return r;
}

TEST_F(KeysTest, ClientWritesGetsSearchesListsAndDeletesByKey) {
  auto c = Connect();
  ASSERT_TRUE(c);
  Create(*c, "v");
  const std::string binary("bin\0key", 7);
  std::vector<Record> records = {Keyed("a", {1, 0, 0, 0}, {{"n", int64_t(1)}}), Keyed("b", {2, 0, 0, 0}),
                                 Keyed(binary, {3, 0, 0, 0})};
  auto written = c->UpsertKeyed("v", kDim, records);
  ASSERT_TRUE(written.has_value()) << written.error().ToString();
  EXPECT_EQ(*written, 3u);
  // An id record beside them.
  std::vector<Record> by_id = {Record{7, {2.1f, 0, 0, 0}, {}}};
  ASSERT_TRUE(c->Upsert("v", kDim, by_id).has_value());

  auto got = c->GetKeyed("v", std::vector<std::string>{"a", "zz", binary});
  ASSERT_TRUE(got.has_value()) << got.error().ToString();
  ASSERT_EQ(got->size(), 3u);
  ASSERT_TRUE((*got)[0].has_value());
  EXPECT_EQ((*got)[0]->key, "a");
  EXPECT_EQ((*got)[0]->id, kKeyedIdBase);
  EXPECT_EQ((*got)[0]->vector, (std::vector<float>{1, 0, 0, 0}));
  EXPECT_EQ((*got)[0]->attributes, (Attributes{{"n", int64_t(1)}}));
  EXPECT_FALSE((*got)[1].has_value());
  ASSERT_TRUE((*got)[2].has_value());
  EXPECT_EQ((*got)[2]->key, binary);

  // Replacing by key keeps the id.
  std::vector<Record> again = {Keyed("a", {9, 0, 0, 0})};
  ASSERT_TRUE(c->UpsertKeyed("v", kDim, again).has_value());
  EXPECT_EQ((*c->GetKeyed("v", std::vector<std::string>{"a"}))[0]->id, kKeyedIdBase);

  const std::vector<float> queries = {2, 0, 0, 0, 9, 0, 0, 0};
  SearchOptions options;
  options.k = 2;
  options.strategy = SearchStrategy::kScan;
  auto hits = c->SearchKeyed("v", queries.data(), kDim, 2, options);
  ASSERT_TRUE(hits.has_value()) << hits.error().ToString();
  ASSERT_EQ(hits->size(), 2u);
  ASSERT_EQ((*hits)[0].size(), 2u);
  EXPECT_EQ((*hits)[0][0].key, "b");
  EXPECT_EQ((*hits)[0][1].id, 7u);  // distance 0.01: written by id, no key
  EXPECT_EQ((*hits)[0][1].key, "");
  EXPECT_EQ((*hits)[1][0].key, "a");

  auto page = c->ListKeys("v", 0, 2);
  ASSERT_TRUE(page.has_value()) << page.error().ToString();
  EXPECT_EQ(page->keys, (std::vector<std::string>{"a", "b"}));
  auto rest = c->ListKeys("v", page->next_cursor, 2);
  ASSERT_TRUE(rest.has_value());
  EXPECT_EQ(rest->keys, (std::vector<std::string>{binary}));
  EXPECT_EQ(rest->next_cursor, 0u);

  auto deleted = c->DeleteKeyed("v", std::vector<std::string>{"b", "never"});
  ASSERT_TRUE(deleted.has_value());
  EXPECT_EQ(*deleted, 2u);
  EXPECT_FALSE((*c->GetKeyed("v", std::vector<std::string>{"b"}))[0].has_value());
  EXPECT_EQ(c->DescribeCollection("v")->num_vectors, 3u);

  // Errors: a bad key is refused by the client before sending, and by the server.
  std::vector<Record> empty_key = {Keyed("", {1, 0, 0, 0})};
  auto bad = c->UpsertKeyed("v", kDim, empty_key);
  ASSERT_FALSE(bad.has_value());
  EXPECT_NE(bad.error().message().find("key is empty"), std::string::npos) << bad.error().ToString();
  auto too_long = c->GetKeyed("v", std::vector<std::string>{std::string(kMaxKeyBytes + 1, 'x')});
  ASSERT_FALSE(too_long.has_value());
  EXPECT_EQ(too_long.error().code(), StatusCode::kInvalidArgument) << too_long.error().ToString();
  EXPECT_NE(too_long.error().message().find("1025 bytes"), std::string::npos) << too_long.error().ToString();
  auto missing = c->ListKeys("nope", 0, 10);
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code(), StatusCode::kNotFound);
}

TEST_F(KeysTest, CliUpsertsGetsSearchesListsAndDeletesByKey) {
  ASSERT_EQ(Cli("create k --dim 4 --metric l2").rc, 0);
  Run r = Cli("upsert k --key doc:1 --vector 1,0,0,0");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("doc:1"), std::string::npos) << r.out;
  // A file of vectors with a file of keys.
  auto vs = VectorSet::Create(3, kDim);
  ASSERT_TRUE(vs.has_value());
  for (size_t i = 0; i < 3; ++i) {
    const auto v = VectorFor(i + 10, kDim);
    std::copy(v.begin(), v.end(), vs->mutable_row(i));
  }
  const auto vectors = dir_ / "keyed.fbin";
  ASSERT_TRUE(storage::WriteVectors(vectors, *vs).ok());
  {
    std::ofstream keys(dir_ / "keys.txt");
    keys << "row:0\nrow:1\r\nrow:2\n";
  }
  r = Cli(fmt::format("upsert k --vectors {} --keys {}", vectors.string(), (dir_ / "keys.txt").string()));
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("upserted 3 vectors by key"), std::string::npos) << r.out;

  r = Cli("get k --key doc:1 --key row:2 --key nope");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find(fmt::format("{} key=doc:1: [1,0,0,0]", kKeyedIdBase)), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("key=row:2"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("nope: not found"), std::string::npos) << r.out;

  r = Cli("search k --vector 1,0,0,0 --k 1");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out, fmt::format("{}\t0\tdoc:1\n", kKeyedIdBase));
  r = Cli("search k --vector 1,0,0,0 --k 1 --json");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(Json::parse(r.out)["results"][0][0]["key"], "doc:1") << r.out;

  r = Cli("keys k --all --count 2 --json");
  ASSERT_EQ(r.rc, 0) << r.err;
  std::vector<std::string> listed;
  const Json page = Json::parse(r.out);
  for (const auto& e : page["keys"]) listed.push_back(e["key"].get<std::string>());
  EXPECT_EQ(listed, (std::vector<std::string>{"doc:1", "row:0", "row:1", "row:2"}));

  r = Cli("delete k --key row:0");
  ASSERT_EQ(r.rc, 0) << r.err;
  r = Cli("keys k");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out.find("row:0"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("row:1"), std::string::npos) << r.out;

  // Usage errors: one line each.
  r = Cli("upsert k --key x");
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.err.find("--key and --vector go together"), std::string::npos) << r.err;
  r = Cli(fmt::format("upsert k --vectors {} --keys {}", vectors.string(), (dir_ / "nothere.txt").string()));
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.err.find("cannot open the keys file"), std::string::npos) << r.err;
  r = Cli("get k");
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.err.find("give ids, or --key"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace strata::client
