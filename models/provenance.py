"""Where a model or file came from, for a dataset's manifest: local files with their sha256, Hub
models with the revision found in the local Hugging Face cache. Every function also checks that
what it describes exists, raising ValueError naming it, so a build can fail before any Beam work.
Results are JSON-able and deterministic (the same inputs always describe the same way)."""
from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def describe_file(path: str | Path, what: str) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{what} {p} does not exist" if not p.exists() else
                         f"{what} {p} is not a file")
    return {"path": str(path), "sha256": file_sha256(p)}


def looks_like_path(name: str) -> bool:
    """A Hub id is `name` or `owner/name`; anything else (absolute, ./, ~, deeper) is a path."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name


def hub_revision(repo_id: str, filename: str = "config.json") -> str:
    """The commit of `repo_id` that the Hugging Face cache holds (downloading `filename` into the
    cache when it is not there, which needs network access)."""
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    path = try_to_load_from_cache(repo_id, filename)
    if not isinstance(path, str):
        try:
            path = hf_hub_download(repo_id, filename)
        except Exception as exc:
            raise ValueError(f"{repo_id!r} is neither a local directory nor in the Hugging Face "
                             f"cache, and the Hub cannot be reached ({type(exc).__name__}); "
                             f"pass a local model directory") from exc
    match = re.search(r"snapshots/([^/]+)/", Path(path).as_posix())
    return match.group(1) if match else "unknown"


def describe_model(name_or_path: str, what: str) -> dict[str, Any]:
    """A transformers model directory (sha256 of its config, sizes of its weight files) or a Hub
    id (with the cached revision)."""
    p = Path(name_or_path).expanduser()
    if p.exists() or looks_like_path(name_or_path):
        if not p.is_dir():
            raise ValueError(f"{what} {name_or_path} is not a model directory"
                             + ("" if p.exists() else " (it does not exist)"))
        if not (p / "config.json").is_file():
            raise ValueError(f"{what} {name_or_path} has no config.json: not a model directory")
        files = sorted(f for f in p.iterdir() if f.suffix in WEIGHT_SUFFIXES)
        if not files:
            raise ValueError(f"{what} {name_or_path} has no weight files "
                             f"({', '.join(WEIGHT_SUFFIXES)})")
        # Weights of a 7B model are tens of GB: their sizes, not their hashes.
        return {"path": name_or_path, "config_sha256": file_sha256(p / "config.json"),
                "weight_bytes": {f.name: f.stat().st_size for f in files}}
    return {"hub_id": name_or_path, "revision": hub_revision(name_or_path)}
