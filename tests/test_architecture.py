"""The layer map of docs/architecture.md, enforced: every import in the package points down.

Function-level imports count too (a lazy import is still a dependency). The runtime never imports
torch, anywhere.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# bottom first; a module's layer is the longest prefix that names one
LAYERS = [
    ["tinyllm", "tinyllm.errors", "tinyllm.units"],
    ["tinyllm.atomic"],
    ["tinyllm.runlock"],
    ["tinyllm.config"],
    ["tinyllm.tokenizer"],
    ["tinyllm.modeldir"],
    ["tinyllm.models"],
    ["tinyllm.checkpoint"],
    ["tinyllm.data"],
    ["tinyllm.runtime"],
    ["tinyllm.engines"],
    ["tinyllm.convert"],
    ["tinyllm.export"],
    ["tinyllm.train"],
    ["tinyllm.tasks"],
    ["tinyllm.serve"],
    ["tinyllm.bundled"],
    ["tinyllm.cli", "tinyllm.__main__"],
    ["tinyllm_tui"],
]
RANK = {prefix: i for i, names in enumerate(LAYERS) for prefix in names}


def layer_of(module: str) -> int | None:
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        rank = RANK.get(".".join(parts[:n]))
        if rank is not None:
            return rank
    return None


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported module) for every import in the file, relative ones resolved."""
    mod = module_name(path)
    package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.append((node.lineno, name))
            # `from tinyllm import checkpoint` imports the submodule tinyllm.checkpoint
            if name in RANK or layer_of(name) is not None:
                out += [(node.lineno, f"{name}.{a.name}") for a in node.names
                        if layer_of(f"{name}.{a.name}") != layer_of(name)]
    return out


def package_files():
    for pkg in ("tinyllm", "tinyllm_tui"):
        yield from sorted((ROOT / pkg).rglob("*.py"))


def test_every_import_points_down():
    bad = []
    for path in package_files():
        own = layer_of(module_name(path))
        assert own is not None, f"{path}: not in the layer map of docs/architecture.md"
        for line, name in imports(path):
            other = layer_of(name)
            if other is not None and other > own:
                bad.append(f"{path.relative_to(ROOT)}:{line}: imports {name} "
                           f"(layer {LAYERS[other][0]} is above {LAYERS[own][0]})")
    assert not bad, "upward imports:\n" + "\n".join(bad)


def test_runtime_never_imports_torch():
    bad = [f"{p.relative_to(ROOT)}:{line}: imports {name}"
           for p in sorted((ROOT / "tinyllm" / "runtime").rglob("*.py"))
           for line, name in imports(p) if name.split(".")[0] == "torch"]
    assert not bad, "\n".join(bad)


def test_the_map_names_every_folder():
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    folders = [p.name for p in (ROOT / "tinyllm").iterdir()
               if p.is_dir() and (p / "__init__.py").is_file()]
    missing = [f for f in folders if f"`{f}/`" not in text and f"tinyllm/{f}/" not in text]
    assert not missing, f"docs/architecture.md does not describe: {missing}"


def test_tasks_never_import_click():
    """Tasks declare options as tinyllm.tasks.Option values; only cli/ builds click commands."""
    bad = [f"{p.relative_to(ROOT)}:{line}: imports {name}"
           for p in sorted((ROOT / "tinyllm" / "tasks").rglob("*.py"))
           for line, name in imports(p) if name.split(".")[0] == "click"]
    assert not bad, "\n".join(bad)


def writes_for_people(path: Path) -> list[tuple[int, str]]:
    """(line, what) for every print() call, sys.stdout/sys.stderr use and err=/stderr=True keyword."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
            out.append((node.lineno, "print()"))
        elif isinstance(node, ast.Attribute) and node.attr in ("stderr", "stdout") \
                and isinstance(node.value, ast.Name) and node.value.id == "sys":
            out.append((node.lineno, f"sys.{node.attr}"))
        elif isinstance(node, ast.keyword) and node.arg in ("err", "stderr") \
                and isinstance(node.value, ast.Constant) and node.value.value is True:
            out.append((node.value.lineno, f"{node.arg}=True"))
    return out


def test_only_the_cli_prints():
    """Library code returns, raises, or reports through log=/progress=/callbacks; printing for
    people is cli/'s (and the TUI's)."""
    cli = ROOT / "tinyllm" / "cli"
    bad = [f"{p.relative_to(ROOT)}:{line}: {what}"
           for p in sorted((ROOT / "tinyllm").rglob("*.py")) if cli not in p.parents
           for line, what in writes_for_people(p)]
    assert not bad, "library code that prints:\n" + "\n".join(bad)
