"""What a resumed build's finished episodes depend on besides the command: the source's identity
(its metadata's content and each planned data file's size and modification time) and armdata's
own code (a hash of the package's files, so a code change without a version bump is noticed).
`pipeline.resume` keys its work on both, so that a source rewritten at the same path, or other
code, never mixes old spills into a new output."""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import posixpath
from pathlib import Path
from typing import Any

from apache_beam.io.filesystems import FileSystems

from armdata.pipeline.sinks import storage
from armdata.pipeline.sources.lerobot import LeRobotPlan
from armdata.pipeline.sources.rlds import SourcePlan

# The armdata subpackages whose files make the rows (what a build's workers import).
CODE_PACKAGES = ("pipeline", "transforms", "schemas", "configs", "models", "prompts")
CODE_SUFFIXES = (".py", ".yaml")
# Read in full (small); every other planned file is identified by its size and mtime.
TFDS_METADATA = ("dataset_info.json", "features.json")


def package_dir(package: str) -> Path:
    """Where `armdata.<package>` lives: its repository folder in an editable install (setup.py's
    package_dir), `site-packages/armdata/<package>` in a wheel."""
    return Path(importlib.util.find_spec(f"armdata.{package}").submodule_search_locations[0])


@functools.lru_cache(maxsize=4)
def code_identity(root: Path | None = None) -> str:
    """sha256 over armdata's package files (paths and contents), computed once per process;
    `root` holds the packages as folders (tests), else they are found through the install."""
    digest = hashlib.sha256()
    for package in CODE_PACKAGES:
        base = root / package if root else package_dir(package)
        for path in sorted(base.rglob("*")):
            if path.suffix in CODE_SUFFIXES and path.is_file():
                digest.update(f"{package}/{path.relative_to(base).as_posix()}".encode() + b"\0")
                digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def file_stamps(directory: str) -> dict[str, tuple[int, float]]:
    """(size, modification time) of every file below `directory`, by path relative to it; one
    listing, also on object stores."""
    base = directory.rstrip("/")
    if storage.is_local(base):
        stamps = {}
        for parent, _, files in os.walk(base):
            for name in files:
                st = os.stat(os.path.join(parent, name))
                stamps[os.path.relpath(os.path.join(parent, name), base)] = (st.st_size,
                                                                            st.st_mtime_ns)
        return stamps
    return {m.path[len(base) + 1:]: (m.size_in_bytes, m.last_updated_in_seconds)
            for r in FileSystems.match([base + "/**"]) for m in r.metadata_list}


def planned_files(plan: SourcePlan | LeRobotPlan, stamps: dict[str, Any]
                  ) -> tuple[list[str], list[str]]:
    """(metadata files read in full, data files identified by size and mtime), relative to the
    source directory (TFDS shards lie in it, so their names are their relative paths)."""
    if isinstance(plan, LeRobotPlan):
        data = {e.data_file for e in plan.episodes} | {v[1] for e in plan.episodes
                                                       for v in e.videos}
        return sorted(p for p in stamps if p.startswith("meta/")), sorted(data)
    return list(TFDS_METADATA), sorted({posixpath.basename(r.filename) for r in plan.reads})


def source_identity(plan: SourcePlan | LeRobotPlan) -> str:
    """sha256 of the planned source's metadata contents and its data files' sizes and mtimes (a
    missing file counts as missing): any rewrite of the source at the same path changes it."""
    stamps = file_stamps(plan.directory)
    meta, data = planned_files(plan, stamps)
    digest = hashlib.sha256()
    for rel in meta:
        path = storage.join(plan.directory, rel)
        content = storage.read_bytes(path) if storage.exists(path) else b"<missing>"
        digest.update(rel.encode() + b"\0" + hashlib.sha256(content).digest())
    for rel in data:
        digest.update(f"{rel}\0{stamps.get(rel)}\n".encode())
    return digest.hexdigest()


def build_identity(plan: SourcePlan | LeRobotPlan) -> dict[str, Any]:
    return {"source": source_identity(plan), "code": code_identity()}
