"""The package's shape: what imports what, and what tests and benchmarks may use."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ssinfogan_jax"


def _modules() -> dict[str, pathlib.Path]:
    """{dotted name: path} of every module of the package."""
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(path: pathlib.Path, name: str) -> set[str]:
    """The absolute names a module imports (module level and inside functions)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def test_importing_the_train_step_loads_no_data_module_and_no_tensorflow():
    code = (
        "import sys, ssinfogan_jax.train; "
        "print(sorted(m for m in sys.modules if m.startswith('ssinfogan_jax.data') "
        "or m.split('.')[0] in ('tensorflow', 'tensorflow_datasets')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "[]", out.stdout


def test_the_library_never_imports_configs():
    offenders = {
        name
        for name, path in _modules().items()
        if any(i == "configs" or i.startswith("configs.") for i in _imports(path, name))
    }
    assert offenders == set()


def test_data_modules_import_each_other_without_a_cycle():
    modules = _modules()
    graph = {
        name: {i for i in _imports(path, name) if i in modules and i != name}
        for name, path in modules.items()
        if name.startswith("ssinfogan_jax.data")
    }

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in graph.get(start, ()):
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    cycles = sorted(name for name in graph if reaches(name, name, {name}))
    assert cycles == []
    # The data layer never reaches up into the models, the loop or the entry point.
    upward = {"ssinfogan_jax.models", "ssinfogan_jax.loop", "ssinfogan_jax.main"}
    assert {name for name, deps in graph.items() if deps & upward} == set()


def _private_uses(path: pathlib.Path) -> list[str]:
    """`from ssinfogan_jax... import _x`, and `m._x` where m names a module of the package."""
    tree = ast.parse(path.read_text())
    aliases, found = set(), []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ssinfogan_jax"):
            for alias in node.names:
                if alias.name.startswith("_"):
                    found.append(f"{path.name}: from {node.module} import {alias.name}")
                aliases.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("ssinfogan_jax"):
                    aliases.add(alias.asname or alias.name.split(".")[0])
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
        ):
            found.append(f"{path.name}:{node.lineno}: {node.value.id}.{node.attr}")
    return found


def test_tests_and_benchmarks_use_no_private_name_of_the_package():
    files = [*(ROOT / "tests").rglob("*.py"), *(ROOT / "benchmarks").rglob("*.py")]
    found = [use for path in files for use in _private_uses(path)]
    assert found == []
