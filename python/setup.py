"""Builds strata._strata with the project's CMake and packages it (see pyproject.toml).

The extension is compiled by CMake in <checkout>/build/py (STRATA_PY_BUILD_DIR overrides),
the same build directory scripts/test.sh uses, so an install after a test run only links.
Offline: it needs only Debian's packages (scripts/setup.sh), not PyPI.
"""

import os
import pathlib
import re
import shutil
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
VERSION = re.search(r"project\(strata VERSION ([0-9.]+)", (ROOT / "CMakeLists.txt").read_text()).group(1)


class CMakeExtension(Extension):
    def __init__(self, name):
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        build_dir = pathlib.Path(os.environ.get("STRATA_PY_BUILD_DIR", ROOT / "build" / "py"))
        env = dict(os.environ)
        env.setdefault("CCACHE_BASEDIR", str(ROOT))
        env.setdefault("CCACHE_NOHASHDIR", "1")
        subprocess.check_call(
            ["cmake", "-S", str(ROOT), "-B", str(build_dir), "-G", "Ninja", "-DCMAKE_BUILD_TYPE=Release",
             "-DSTRATA_BUILD_PYTHON=ON", "-DSTRATA_BUILD_TESTS=OFF", "-DSTRATA_BUILD_BENCH=OFF",
             f"-DPython_EXECUTABLE={sys.executable}"], env=env)
        subprocess.check_call(["cmake", "--build", str(build_dir), "--target", "_strata",
                               "-j", str(os.cpu_count() or 2)], env=env)
        built = build_dir / "python" / "strata" / pathlib.Path(self.get_ext_filename("_strata")).name
        dest = pathlib.Path(self.get_ext_fullpath(ext.name))
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(built, dest)


setup(
    version=VERSION,
    packages=["strata"],
    package_data={"strata": ["py.typed", "_strata.pyi"]},
    ext_modules=[CMakeExtension("strata._strata")],
    cmdclass={"build_ext": CMakeBuild},
    zip_safe=False,
)
