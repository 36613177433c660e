// `strata plot RESULTS.jsonl... -o FILE.svg|.png`: recall@k on x, QPS (log) on y, one Pareto
// curve per run, index or peer (tools/plot.h reads and groups the results).
//
// The drawing is matplotlib's, from Debian's python3-matplotlib (scripts/setup.sh installs
// it), run as a child process on a small JSON description of the series. Why not a C++ SVG
// writer: PNG output would need a rasteriser and fonts, and axis ticks on a log scale,
// label placement and legends are what matplotlib already does well -- ann-benchmarks'
// plots are matplotlib's too. Only `strata plot` needs Python; nothing else in the tool does.

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include "tools/commands.h"
#include "tools/plot.h"

namespace strata::tools::cmd {
namespace fs = std::filesystem;
namespace {

// argv[1]: the series (JSON); argv[2]: the output; argv[3]: "svg" or "png".
constexpr const char* kScript = R"PY(
import json, sys
try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError as e:
    print("matplotlib is not installed (%s): apt-get install python3-matplotlib, or run scripts/setup.sh" % e,
          file=sys.stderr)
    sys.exit(3)
spec = json.load(open(sys.argv[1]))
plt.rcParams["svg.fonttype"] = "none"   # text stays text: searchable, and small
plt.rcParams["svg.hashsalt"] = "strata" # the same input gives the same file
fig, ax = plt.subplots(figsize=(9, 6), dpi=130)
markers = "osD^v<>ph*"
for i, s in enumerate(spec["series"]):
    m = markers[i % len(markers)]
    f = s["frontier"]
    line, = ax.plot([p[0] for p in f], [p[1] for p in f], marker=m, linewidth=1.8, markersize=5,
                    label=s["name"])
    dom = s["dominated"]
    if dom:
        ax.scatter([p[0] for p in dom], [p[1] for p in dom], marker=m, s=14, color=line.get_color(),
                   alpha=0.35, linewidths=0)
ax.set_yscale("log")
ax.set_xlabel(spec["xlabel"], fontsize=11)
ax.set_ylabel(spec["ylabel"], fontsize=11)
ax.set_title(spec["title"], fontsize=11)
ax.grid(True, which="major", alpha=0.35)
ax.grid(True, which="minor", alpha=0.12)
ax.legend(loc="lower left", fontsize=10, framealpha=0.9)
fig.text(0.99, 0.005, "Pareto frontier per series; faint points: dominated settings", ha="right",
         va="bottom", fontsize=8, color="0.4")
fig.tight_layout()
fig.savefig(sys.argv[2], format=sys.argv[3], metadata={"Date": None} if sys.argv[3] == "svg" else None)
)PY";

// The interpreter: $STRATA_PYTHON, else Debian's /usr/bin/python3 (a pyenv or venv python3
// first on PATH does not see Debian's matplotlib), else python3 on PATH.
std::string PythonPath() {
  if (const char* env = std::getenv("STRATA_PYTHON"); env != nullptr && *env != '\0') return env;
  if (::access("/usr/bin/python3", X_OK) == 0) return "/usr/bin/python3";
  return "python3";
}

// Runs python3 -c kScript ARGS; its exit status, or -1 when it could not be started.
int RunPython(const std::vector<std::string>& args) {
  const std::string python = PythonPath();
  std::vector<char*> argv = {const_cast<char*>(python.c_str()), const_cast<char*>("-c"), const_cast<char*>(kScript)};
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t pid = ::fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    ::execvp(python.c_str(), argv.data());
    std::_Exit(127);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return -1;
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace

int RunPlot(const PlotArgs& a) {
  auto data = LoadPlotData(a.inputs, a.qps_key);
  if (!data) return Fail(data.error());
  nlohmann::json spec;
  spec["series"] = nlohmann::json::array();
  for (const PlotSeries& s : data->series) {
    nlohmann::json f = nlohmann::json::array(), dom = nlohmann::json::array();
    for (const PlotPoint& p : s.frontier) f.push_back({p.recall, p.qps});
    for (const PlotPoint& p : s.points) {
      const bool on = std::any_of(s.frontier.begin(), s.frontier.end(),
                                  [&](const PlotPoint& q) { return q.recall == p.recall && q.qps == p.qps; });
      if (!on) dom.push_back({p.recall, p.qps});
    }
    spec["series"].push_back({{"name", s.name}, {"frontier", f}, {"dominated", dom}});
  }
  const std::string k = data->k > 0 ? std::to_string(data->k) : "k";
  std::string title = a.title;
  if (title.empty()) {
    title = data->dataset.empty() ? "Recall against queries per second" : data->dataset;
    if (!data->metric.empty()) title += " (" + data->metric + ")";
    title += ", recall@" + k;
  }
  const std::string machine = a.machine.empty() ? MachineDescription() : a.machine;
  if (!machine.empty()) title += "\n" + machine;
  spec["title"] = title;
  spec["xlabel"] = "recall@" + k;
  const std::string& qk = data->qps_key;
  spec["ylabel"] = qk == "qps_1t" ? "queries per second, one thread (log)"
                   : qk == "qps_all" ? "queries per second, all threads (log)"
                                     : "queries per second (log)";

  // The description and the drawing go to temporary files next to the output; the drawing is
  // renamed over the output only once complete.
  const fs::path out(a.out);
  const std::string ext = out.extension().string().substr(1);
  const fs::path dir = out.has_parent_path() ? out.parent_path() : fs::path(".");
  const fs::path spec_path = dir / fmt::format(".{}.{}.json.tmp", out.filename().string(), ::getpid());
  const fs::path tmp_out = dir / fmt::format(".{}.{}.tmp.{}", out.filename().string(), ::getpid(), ext);
  {
    std::ofstream f(spec_path);
    f << spec.dump();
    if (!f) return Fail(IOError("{}: cannot write", spec_path.string()));
  }
  const int rc = RunPython({spec_path.string(), tmp_out.string(), ext});
  std::error_code ec;
  fs::remove(spec_path, ec);
  if (rc != 0) {
    fs::remove(tmp_out, ec);
    if (rc == 127 || rc < 0) return Fail(NotFound("python3 could not be run; strata plot draws with matplotlib"));
    return Fail(Internal("drawing {} failed (python3 exited with status {})", a.out, rc));
  }
  fs::rename(tmp_out, out, ec);
  if (ec) {
    fs::remove(tmp_out, ec);
    return Fail(IOError("{}: {}", a.out, ec.message()));
  }
  size_t points = 0;
  for (const PlotSeries& s : data->series) points += s.points.size();
  fmt::print("wrote {}: {} series, {} points\n", a.out, data->series.size(), points);
  return 0;
}

}  // namespace strata::tools::cmd
