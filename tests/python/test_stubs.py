"""The type stubs (python/strata/_strata.pyi) name what the module has, and the module documents it."""

import ast
import pathlib

import strata
import strata._strata as ext

STUB = pathlib.Path(__file__).resolve().parents[2] / "python" / "strata" / "_strata.pyi"


def test_stub_names_exist_in_the_module():
    tree = ast.parse(STUB.read_text())
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            cls = getattr(ext, node.name)
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and not item.name.startswith("__"):
                    assert hasattr(cls, item.name), f"{node.name}.{item.name} in the stub, not in the module"
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            assert hasattr(ext, node.target.id), node.target.id


def test_public_methods_are_documented_and_stubbed():
    stub = STUB.read_text()
    for cls in (strata.Engine, strata.HnswIndex, strata.SpannIndex, strata.Client):
        assert cls.__doc__ and len(cls.__doc__) > 100
        assert f"class {cls.__name__}:" in stub
        for name, member in vars(cls).items():
            if name.startswith("_") or not callable(member):
                continue
            assert member.__doc__ and "\n" in member.__doc__, f"{cls.__name__}.{name} has no docstring"
            assert f"def {name}(" in stub, f"{cls.__name__}.{name} is not in the stub"


def test_errors_are_builtin_subclasses():
    assert issubclass(strata.InvalidArgumentError, ValueError)
    assert issubclass(strata.IoError, OSError) and issubclass(strata.CorruptionError, OSError)
    assert issubclass(strata.NoSuchFileError, FileNotFoundError)
    assert issubclass(strata.NoSuchFileError, strata.NotFoundError)
    for name in strata.__all__:
        obj = getattr(strata, name)
        if isinstance(obj, type) and issubclass(obj, BaseException):
            assert issubclass(obj, strata.Error) and obj.code
