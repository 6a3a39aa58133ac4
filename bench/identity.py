"""What identifies code and files in a cache key: the source a model's training reaches, local input files.

A key that holds these changes when a line of the method, of the harness's training path or of the data synthesis
changes, or when a user's occluder or weight file does, though no option did (``bench.cache`` for models,
``bench.data.resolve`` for decoded datasets).
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
from functools import cache
from pathlib import Path
from typing import Any

from bench.io import config_hash

# Modules whose code decides a trained model whatever the method: the loop, and the data it draws
# (paired batches are synthesised on the fly by the occlusion generator).
HARNESS_TRAINING_MODULES = ("bench.training", "bench.data.types", "bench.data.occluders")


@cache
def _module_file(name: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    return Path(spec.origin)


def _imports(name: str, path: Path) -> set[str]:
    """Every module ``path`` imports, lazily or not (``from a import b`` names ``a`` and ``a.b``)."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            out.add(module)
            out.update(f"{module}.{alias.name}" for alias in node.names)
    return out


def source_closure(roots: tuple[str, ...], packages: tuple[str, ...]) -> dict[str, str]:
    """sha256 of each module reachable from ``roots`` through imports that stay inside ``packages``."""
    seen: dict[str, str] = {}
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen or name.split(".")[0] not in packages:
            continue
        path = _module_file(name)
        if path is None:
            continue
        seen[name] = hashlib.sha256(path.read_bytes()).hexdigest()
        todo.extend(_imports(name, path))
    return dict(sorted(seen.items()))


def code_identity(factory: str, distribution: str, version: str) -> dict[str, Any]:
    """The plugin's distribution and version, and one hash of every source file that shapes the model."""
    module = factory.partition(":")[0]
    files = source_closure((module, *HARNESS_TRAINING_MODULES), (module.split(".")[0], "bench"))
    return {
        "distribution": distribution,
        "version": version,
        "source_sha256": config_hash(files),
        "modules": len(files),
    }


def files_identity(*paths: Path | None) -> list[list[Any]]:
    """(path, size, mtime) of every file in the given files or folders: local weights and occluders change
    what is trained without changing any option."""
    out = []
    for root in paths:
        if root is None or not root.exists():
            continue
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for p in files:
            st = p.stat()
            out.append([str(p.resolve()), st.st_size, st.st_mtime_ns])
    return out
