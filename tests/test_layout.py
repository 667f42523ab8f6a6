"""The install name and the floor plan: everything imports as `armdata.*`, lower floors never import
upper ones, and a built wheel installs only `armdata` and works from outside the repository."""
from __future__ import annotations

import ast
import importlib
import logging
import pkgutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

import armdata
from armdata.logs import LibraryNoise
from tests.conftest import REPO

OLD_NAMES = {"pipeline", "transforms", "schemas", "configs", "models", "prompts", "trainer"}
ROOMS = ["pipeline", "trainer", "exports", "viewer", "transforms", "models", "schemas", "configs",
         "prompts", "testing"]   # folders installed as armdata.<folder>
FOLDERS = ["armdata", *ROOMS, "tests", "benchmarks"]
# folder → armdata packages its modules must not import
FORBIDDEN = {
    "transforms": ("armdata.pipeline", "armdata.commands", "armdata.cli", "armdata.trainer",
                   "armdata.exports", "armdata.testing"),
    "models": ("armdata.pipeline", "armdata.commands", "armdata.cli", "armdata.trainer",
               "armdata.exports", "armdata.testing", "armdata.transforms"),
    "schemas": ("armdata.pipeline", "armdata.commands", "armdata.cli", "armdata.trainer",
                "armdata.exports", "armdata.testing"),
    "pipeline": ("armdata.commands", "armdata.cli", "armdata.trainer", "armdata.exports"),
    "trainer": ("armdata.commands", "armdata.cli", "armdata.pipeline", "armdata.models",
                "armdata.exports"),
    "viewer": ("armdata.trainer", "armdata.exports", "armdata.testing"),
    "exports": ("armdata.commands", "armdata.cli", "armdata.models", "armdata.transforms",
                "armdata.trainer"),
}


def imported_modules(path: Path) -> list[str]:
    """Every module an `import`/`from ... import` in the file names (function bodies included)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


def py_files(folder: str) -> list[Path]:
    return sorted((REPO / folder).rglob("*.py"))


def test_no_old_top_level_imports() -> None:
    bad = [f"{p.relative_to(REPO)}: {name}" for folder in FOLDERS for p in py_files(folder)
           for name in imported_modules(p) if name.split(".")[0] in OLD_NAMES]
    assert not bad, bad


def patches_sys_path(node: ast.AST) -> bool:
    """`sys.path.insert(...)`, `sys.path.append(...)`, `sys.path[...] = ...`, `sys.path = ...`."""
    def is_sys_path(n: ast.AST) -> bool:
        return isinstance(n, ast.Attribute) and n.attr == "path" and \
            isinstance(n.value, ast.Name) and n.value.id == "sys"
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        return is_sys_path(node.func.value)
    if isinstance(node, (ast.Assign, ast.AugAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return any(is_sys_path(t) or (isinstance(t, ast.Subscript) and is_sys_path(t.value))
                   for t in targets)
    return False


def test_nothing_patches_sys_path() -> None:
    """Modules, tests and benchmarks import `armdata.*` from the install (and benchmarks'
    shared code as `benchmarks.*`), never by adding folders to sys.path."""
    bad = [f"{p.relative_to(REPO)}:{node.lineno}" for folder in FOLDERS for p in py_files(folder)
           for node in ast.walk(ast.parse(p.read_text(), str(p))) if patches_sys_path(node)]
    assert not bad, bad


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_import_layering(folder: str) -> None:
    bad = [f"{p.relative_to(REPO)}: {name}" for p in py_files(folder)
           for name in imported_modules(p) if name.startswith(FORBIDDEN[folder])]
    assert not bad, bad


def test_log_filter_passes_every_armdata_module() -> None:
    """One prefix: INFO from any of our modules (the trainer's loss line included) is shown."""
    rooms = [importlib.import_module(f"armdata.{room}") for room in ROOMS]
    names = [m.name for pkg in [armdata, *rooms]
             for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + ".")]
    assert "armdata.trainer.train" in names
    noise = LibraryNoise()
    hidden = [n for n in names
              if not noise.filter(logging.LogRecord(n, logging.INFO, __file__, 1, "m", None, None))]
    assert not hidden, hidden


@pytest.mark.e2e
def test_wheel_installs_only_armdata(tmp_path: Path) -> None:
    """Build the wheel, install it into a fresh venv (reusing this Python's dependencies), run
    `armdata --help` and an actions build of a generated dataset from outside the repository."""
    run = dict(check=True, capture_output=True, text=True, cwd=tmp_path)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp_path / "dist"), str(REPO)], **run)
    env_dir = tmp_path / "venv"
    venv.create(env_dir, system_site_packages=True, with_pip=False)
    py = env_dir / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                               **run).stdout.strip())
    before = set(p.name for p in site.iterdir())
    wheel = next((tmp_path / "dist").glob("armdata-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps",
                    str(wheel)], **run)
    added = sorted(set(p.name for p in site.iterdir()) - before)
    assert [n for n in added if not n.startswith("armdata-")] == ["armdata"], added
    assert (site / "armdata" / "configs" / "bridge_dataset.yaml").is_file()
    assert (site / "armdata" / "prompts" / "plan.yaml").is_file()
    where = subprocess.run([str(py), "-c", "import armdata.pipeline.graph as g; print(g.__file__)"],
                           **run).stdout.strip()
    assert where.startswith(str(site)), where
    exe = env_dir / "bin" / "armdata"
    assert "build" in subprocess.run([str(exe), "--help"], **run).stdout
    source = subprocess.run([str(py), "-c", "from armdata.testing.synthetic import write_synthetic_rlds; "
                             "print(write_synthetic_rlds('src', 3, 6, (32, 32), 0))"], **run).stdout.strip()
    subprocess.run([str(exe), "build", "--config", "armdata_demo", "--source", source.splitlines()[-1],
                    "--output", "out", "--direct_running_mode=in_memory", "--direct_num_workers=1"],
                   **run)
    assert (tmp_path / "out" / "manifest.json").is_file()
