#!/usr/bin/env bash
# Installs a built Strata into a temporary prefix, builds examples/embed against
# that prefix only (a fresh project using find_package(strata)), and runs the
# example twice on one data directory: the second run must find the collection
# and the vectors the first run wrote.
#
#   install_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail

if [[ $# -ne 2 ]]; then
  echo "usage: $0 BUILD_DIR SOURCE_DIR" >&2
  exit 2
fi
build_dir=$(cd "$1" && pwd)
source_dir=$(cd "$2" && pwd)

work=$(mktemp -d "${TMPDIR:-/tmp}/strata-install-test.XXXXXX")
cleanup() { rm -rf "$work"; }
trap cleanup EXIT

prefix="$work/prefix"
example_build="$work/embed-build"
data="$work/data"

step() { echo "== $*"; }

step "install $build_dir into $prefix"
cmake --install "$build_dir" --prefix "$prefix" >"$work/install.log" || { cat "$work/install.log"; exit 1; }
for f in include/strata/engine/strata.h include/strata/core/status.h lib/cmake/strata/strataConfig.cmake \
         lib/cmake/strata/strataConfigVersion.cmake lib/cmake/strata/strataTargets.cmake; do
  [[ -f "$prefix/$f" ]] || { echo "missing after install: $f" >&2; exit 1; }
done

# The same compiler as the build (the installed libraries are C++23 objects from it).
cxx=$(sed -n 's/^CMAKE_CXX_COMPILER:[A-Z]*=//p' "$build_dir/CMakeCache.txt")
generator=(-G Ninja)
command -v ninja >/dev/null || generator=()

step "configure examples/embed against $prefix only"
cmake -S "$source_dir/examples/embed" -B "$example_build" "${generator[@]}" \
  ${cxx:+-DCMAKE_CXX_COMPILER="$cxx"} \
  -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF \
  -DCMAKE_FIND_USE_SYSTEM_PACKAGE_REGISTRY=OFF
found=$(sed -n 's/^strata_DIR:[A-Z]*=//p' "$example_build/CMakeCache.txt")
if [[ "$(realpath -m "$found")" != "$(realpath -m "$prefix/lib/cmake/strata")" ]]; then
  echo "find_package(strata) used $found, not the installed prefix" >&2
  exit 1
fi

step "build examples/embed"
cmake --build "$example_build"

# The example's include paths must all lie in the installed prefix (not the source tree).
for dir in $(sed -n 's/^ *INCLUDES = //p' "$example_build/build.ninja" | tr ' ' '\n' | sed 's/^-I//' | grep -v '^-'); do
  if [[ "$dir" != "$prefix"/* ]]; then
    echo "the example's build includes $dir, outside the installed prefix" >&2
    exit 1
  fi
done

step "first run"
"$example_build/embed" "$data" | tee "$work/run1.log"
grep -q "^created collection 'demo'" "$work/run1.log"
grep -q "^OK$" "$work/run1.log"

step "second run (same data directory)"
"$example_build/embed" "$data" | tee "$work/run2.log"
grep -q "^found collection 'demo' with 300 vectors" "$work/run2.log" || {
  echo "the second run did not find the first run's 300 vectors" >&2
  exit 1
}
grep -q "^OK$" "$work/run2.log"

step "passed"
