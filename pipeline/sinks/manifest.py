"""Reading a finished build's manifest and checking the files it lists (inspect, push, exports)."""
from __future__ import annotations

import json
import os
from typing import Any

from armdata.errors import BuildError
from armdata.pipeline.sinks import storage
from armdata.pipeline.sinks.finalize import CARD_PATH, MANIFEST_PATH, REJECTED_PATH, STATISTICS_PATH


def load_manifest(output: str) -> dict[str, Any]:
    path = storage.join(output, "manifest.json")
    if not storage.exists(path):
        raise BuildError(f"{output} has no manifest.json: not a complete armdata build")
    return json.loads(storage.read_bytes(path))


def path_problem(rel: Any) -> str | None:
    """Why a path from a manifest is refused: it must be relative, inside the output, with `/`
    separators and no `.`/`..`/empty part (a crafted one could point anywhere)."""
    if not isinstance(rel, str) or not rel:
        return "not a path"
    if rel.startswith("/") or "\\" in rel or ":" in rel.split("/")[0]:
        return "absolute or not a relative POSIX path"
    if any(part in ("", ".", "..") for part in rel.split("/")):
        return "has an empty, '.' or '..' part"
    return None


def listed_files(output: str, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The manifest's `files` entries ({path, bytes, sha256}), checked for safe paths, the build's
    files all listed and each shard listed with its own sha256. Raises BuildError."""
    files = manifest.get("files")
    where = storage.join(output, MANIFEST_PATH)
    if not isinstance(files, list):
        raise BuildError(f"{where} lists no file checksums (`files`): the build is from an older "
                         f"armdata; rebuild it")
    for entry in files:
        rel = entry.get("path") if isinstance(entry, dict) else None
        why = path_problem(rel)
        if why is None and not (isinstance(entry.get("bytes"), int)
                                and isinstance(entry.get("sha256"), str)):
            why = "no bytes/sha256"
        if why:
            raise BuildError(f"{where}: refusing the file entry {rel!r}: {why}")
    by_path = {f["path"]: f for f in files}
    for rel in (STATISTICS_PATH, REJECTED_PATH, CARD_PATH):
        if rel not in by_path:
            raise BuildError(f"{where}: incomplete build, {rel} is not listed in `files`")
    for shard in manifest["shards"]:
        if by_path.get(shard.get("path"), {}).get("sha256") != shard.get("sha256"):
            raise BuildError(f"{where}: shard {shard.get('path')!r} is not listed in `files` with "
                             f"its sha256")
    return files


def link_in(output: str, rel: str) -> str | None:
    """The first part of `rel` below a local `output` that is a symlink, or None."""
    parts = rel.split("/")
    for i in range(1, len(parts) + 1):
        if os.path.islink(os.path.join(output, *parts[:i])):
            return "/".join(parts[:i])
    return None


def file_problems(output: str, manifest: dict[str, Any]) -> dict[str, str]:
    """{path: what is wrong} for each listed file that is missing, a symlink, or whose size or
    sha256 differs from the manifest's; for a local output also for every file or link in it that
    the manifest does not list (links are reported, never followed)."""
    files = listed_files(output, manifest)
    local = storage.is_local(output)
    problems: dict[str, str] = {}
    for entry in files:
        rel, path = entry["path"], storage.join(output, entry["path"])
        link = link_in(output, rel) if local else None
        size = None if link else storage.size(path)
        if link:
            problems[link] = "is a symlink"
        elif size is None:
            problems[rel] = "is missing"
        elif size != entry["bytes"] or storage.sha256_of(path) != entry["sha256"]:
            problems[rel] = f"does not match the sha256 in {MANIFEST_PATH}"
    if local:
        listed = {f["path"] for f in files} | {MANIFEST_PATH}
        for root, dirs, names in os.walk(output):
            for name in sorted(dirs) + sorted(names):
                rel = os.path.relpath(os.path.join(root, name), output).replace(os.sep, "/")
                if os.path.islink(os.path.join(root, name)):
                    problems.setdefault(rel, "is a symlink")
                elif name in names and rel not in listed:
                    problems[rel] = f"is not listed in {MANIFEST_PATH}"
    return problems


def describe(problems: dict[str, str]) -> str:
    """The first problems of `file_problems` as one line."""
    shown = "; ".join(f"{rel} {why}" for rel, why in list(problems.items())[:3])
    return shown + (f" (and {len(problems) - 3} more)" if len(problems) > 3 else "")
