"""The layering rules that import-linter cannot express (it checks the layer order itself, in
``make lint``): across packages only through package roots, no module pairs importing each
other, and package roots whose exports are sorted and complete."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("protocol", "node", "colony")
SUBPACKAGES = ("node.synth",)


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _imports(path: Path, *, runtime_only: bool) -> list[tuple[int, str]]:
    """(line, module) for every import of ours in the file; ``runtime_only`` skips imports
    under ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text())
    skip: set[int] = set()
    if runtime_only:
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                for sub in ast.walk(node):
                    skip.add(id(sub))
    found = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            base = node.module
            private = [a.name for a in node.names if a.name.startswith("_")]
            # `from node.synth import _ir` imports the module node.synth._ir, not the root's
            # namespace: it counts as that module only
            found.extend((node.lineno, f"{base}.{name}") for name in private)
            if len(private) < len(node.names):
                found.append((node.lineno, base))
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, a.name) for a in node.names)
    return [(n, m) for n, m in found if m.split(".")[0] in PACKAGES]


def _package_of(module: str) -> str:
    # node.synth is part of node: they share private modules; other packages use its root
    return module.split(".")[0]


def _public_root(module: str) -> str:
    """The package root a module's name goes through (``node._store`` → ``node``,
    ``node.synth._api`` → ``node.synth``)."""
    parts = module.split(".")
    keep = []
    for part in parts:
        if part.startswith("_"):
            break
        keep.append(part)
    return ".".join(keep)


def test_across_packages_only_through_package_roots() -> None:
    bad = []
    for module, path in _modules().items():
        own = _package_of(module)
        for line, target in _imports(path, runtime_only=False):
            if _package_of(target) == own:
                continue
            if _public_root(target) != target:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    assert not bad, "import these through their package root:\n" + "\n".join(bad)


def test_no_two_modules_import_each_other() -> None:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        deps = set()
        for _line, target in _imports(path, runtime_only=True):
            # a name imported from a package root counts as the root, not as every module
            if target in modules and target != module:
                deps.add(target)
        graph[module] = deps
    pairs = sorted({tuple(sorted((a, b))) for a, deps in graph.items() for b in deps
                    if a in graph.get(b, set()) and not _is_root_pair(a, b)})
    assert not pairs, f"modules that import each other: {pairs}"


def _is_root_pair(a: str, b: str) -> bool:
    # a package root re-exports its private modules, which may import siblings through it
    return a == _package_of(b) or b == _package_of(a)


def _isort_key(name: str) -> tuple[int, str]:
    if name.isupper() or (name.upper() == name and "_" in name):
        return (0, name)
    return (1 if name[:1].isupper() else 2, name)


@pytest.mark.parametrize("package", [*PACKAGES, *SUBPACKAGES])
def test_package_root_exports_are_sorted_and_complete(package: str) -> None:
    mod = importlib.import_module(package)
    exported = list(getattr(mod, "__all__", []))
    assert exported, f"{package} exports nothing"
    # ruff's RUF022 order (isort-style): CONSTANTS, then Classes, then functions
    assert exported == sorted(exported, key=_isort_key), f"{package}.__all__ is not sorted"
    assert len(set(exported)) == len(exported), f"{package}.__all__ has duplicates"
    tree = ast.parse(Path(mod.__file__ or "").read_text())
    # re-exports are spelled `from package._module import X as X` (trio's style)
    reexported = {a.name for node in tree.body if isinstance(node, ast.ImportFrom)
                  for a in node.names if a.asname == a.name}
    missing = sorted(reexported - set(exported))
    assert not missing, f"{package} re-exports but does not list in __all__: {missing}"
    for name in exported:
        assert hasattr(mod, name), f"{package}.__all__ names {name!r}, which it lacks"
