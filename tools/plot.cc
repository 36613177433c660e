#include "tools/plot.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include <fmt/core.h>
#include <nlohmann/json.hpp>

namespace strata::tools {
namespace {

using Json = nlohmann::json;

// The series a result belongs to: its library, system or index, with its mode or bench.
std::string SeriesName(const Json& j) {
  std::string name;
  for (const char* key : {"lib", "system", "index", "kind"}) {
    if (j.contains(key) && j[key].is_string()) {
      name = j[key].get<std::string>();
      break;
    }
  }
  if (name.empty()) name = "results";
  if (j.contains("bench") && j["bench"].is_string()) name = j["bench"].get<std::string>() + " " + name;
  if (j.contains("mode") && j["mode"].is_string()) name += " (" + j["mode"].get<std::string>() + ")";
  return name;
}

// The swept parameter of a result, e.g. "ef=64" or "max_lists=32".
std::string PointLabel(const Json& j) {
  const Json* params = j.contains("params") && j["params"].is_object() ? &j["params"] : &j;
  for (const char* key : {"ef", "max_lists", "lists", "nprobe", "target", "param"}) {
    if (params->contains(key) && (*params)[key].is_number()) return fmt::format("{}={}", key, (*params)[key].dump());
  }
  return "";
}

std::string DatasetOf(const Json& j) {
  if (j.contains("dataset") && j["dataset"].is_string()) return j["dataset"].get<std::string>();
  if (j.contains("base") && j["base"].is_string()) {
    // data/glove-100/base.fbin -> glove-100
    const std::filesystem::path p(j["base"].get<std::string>());
    return p.has_parent_path() ? p.parent_path().filename().string() : p.stem().string();
  }
  return "";
}

}  // namespace

std::vector<PlotPoint> ParetoFrontier(std::vector<PlotPoint> points) {
  // By decreasing recall (ties: decreasing QPS); keep a point when its QPS beats every point
  // of at least its recall.
  std::sort(points.begin(), points.end(), [](const PlotPoint& a, const PlotPoint& b) {
    return a.recall != b.recall ? a.recall > b.recall : a.qps > b.qps;
  });
  std::vector<PlotPoint> frontier;
  double best_qps = -1;
  for (const PlotPoint& p : points) {
    if (p.qps > best_qps) {
      frontier.push_back(p);
      best_qps = p.qps;
    }
  }
  std::reverse(frontier.begin(), frontier.end());
  return frontier;
}

Result<PlotData> LoadPlotData(const std::vector<std::string>& files, const std::string& qps_key) {
  PlotData data;
  std::map<std::string, size_t> index_of;  // series name -> position
  std::map<std::string, std::string> file_of;  // series name -> the file it came from
  for (const std::string& file : files) {
    std::ifstream in(file);
    if (!in) return Error(IOError("{}: cannot open", file));
    const std::string stem = std::filesystem::path(file).stem().string();
    size_t results = 0, line_no = 0;
    for (std::string line; std::getline(in, line);) {
      ++line_no;
      std::string_view text(line);
      if (text.starts_with("JSON ")) text.remove_prefix(5);
      while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
      if (!text.starts_with("{")) continue;
      Json j = Json::parse(text, nullptr, /*allow_exceptions=*/false);
      if (j.is_discarded() || !j.is_object()) continue;
      if (j.value("summary", false) || !j.contains("recall") || !j["recall"].is_number()) continue;
      std::string key = qps_key;
      if (key == "auto") {
        key = j.contains("qps_1t") ? "qps_1t" : j.contains("qps") ? "qps" : "qps_all";
      }
      if (!j.contains(key) || !j[key].is_number()) continue;
      const double qps = j[key].get<double>();
      if (!(qps > 0)) continue;
      std::string name = SeriesName(j);
      // The same index from another file is another run: name it after its file.
      auto seen = file_of.find(name);
      if (seen != file_of.end() && seen->second != file) name += " [" + stem + "]";
      file_of.emplace(name, file);
      auto [it, added] = index_of.emplace(name, data.series.size());
      if (added) data.series.push_back(PlotSeries{name, {}, {}});
      data.series[it->second].points.push_back({j["recall"].get<double>(), qps, PointLabel(j)});
      if (data.dataset.empty()) data.dataset = DatasetOf(j);
      if (data.metric.empty() && j.contains("metric") && j["metric"].is_string()) data.metric = j["metric"];
      if (data.k == 0 && j.contains("k") && j["k"].is_number_integer()) data.k = j["k"].get<int>();
      if (data.qps_key.empty()) data.qps_key = key;
      ++results;
    }
    if (results == 0) {
      return Error(InvalidArgument("{}: no benchmark results (JSON lines with \"recall\" and \"{}\")", file,
                                   qps_key == "auto" ? std::string("qps_1t\", \"qps\" or \"qps_all") : qps_key));
    }
  }
  for (PlotSeries& s : data.series) s.frontier = ParetoFrontier(s.points);
  return data;
}

std::string MachineDescription() {
  std::ifstream in("/proc/cpuinfo");
  std::string model;
  for (std::string line; std::getline(in, line);) {
    if (line.starts_with("model name")) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos) model = line.substr(line.find_first_not_of(' ', colon + 1));
      break;
    }
  }
  const unsigned cores = std::thread::hardware_concurrency();
  if (model.empty()) return cores ? fmt::format("{} cores", cores) : "";
  return cores ? fmt::format("{}, {} cores", model, cores) : model;
}

}  // namespace strata::tools
