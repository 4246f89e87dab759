"""The import rules, checked on the source: each deployment unit imports only what it may, no private reach-ins.

    protocol  <-  actors  <-  workers  <-  cli
         ^            executor (in the sandbox: protocol only)   images
         ^            corral_skills (in the sandbox's kernels: protocol and executor)
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = ("protocol", "actors", "workers", "executor", "images", "cli", "corral_skills")
MAY_IMPORT = {
    "protocol": {"protocol"},
    "executor": {"protocol", "executor"},
    "corral_skills": {"protocol", "executor", "corral_skills"},
    "actors": {"protocol", "actors"},
    "images": {"protocol", "images"},
    "workers": {"protocol", "actors", "images", "executor", "workers"},
    "cli": set(OURS),
}


def _modules() -> list[tuple[str, Path]]:
    found = []
    for top in OURS:
        for path in sorted((ROOT / top).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found.append((".".join(parts), path))
    return found


def _imports(module: str, path: Path) -> list[str]:
    """Absolute names of every module imported by ``module`` (relative imports resolved)."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names.append(target)
            names += [f"{target}.{alias.name}" for alias in node.names]  # `from pkg import _private`
    return [n for n in names if n.split(".")[0] in OURS]


MODULES = _modules()


def _existing(name: str) -> bool:
    path = ROOT / Path(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


@pytest.mark.parametrize("module,path", MODULES, ids=[m for m, _ in MODULES])
def test_imports_go_one_way(module, path):
    allowed = MAY_IMPORT[module.split(".")[0]]
    for name in _imports(module, path):
        ok = any(name == a or name.startswith(a + ".") for a in allowed)
        assert ok, f"{module} imports {name}; it may import only {sorted(allowed)}"


@pytest.mark.parametrize("module,path", MODULES, ids=[m for m, _ in MODULES])
def test_no_module_reaches_into_another_packages_private_modules(module, path):
    importer_package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for name in _imports(module, path):
        if not _existing(name):
            continue  # an attribute imported from a module, not a module
        parts = name.split(".")
        for i, part in enumerate(parts):
            if part.startswith("_") and not part.startswith("__"):
                owner = ".".join(parts[:i])
                inside = importer_package == owner or importer_package.startswith(owner + ".")
                assert inside, f"{module} imports the private module {name} of {owner}: use {owner}'s public names"
                break
