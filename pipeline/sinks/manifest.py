"""Reading a finished build's manifest and checking its shards against it (inspect, push, exports)."""
from __future__ import annotations

import hashlib
import json
from typing import Any

from armdata.pipeline.errors import BuildError
from armdata.pipeline.sinks import storage


def load_manifest(output: str) -> dict[str, Any]:
    path = storage.join(output, "manifest.json")
    if not storage.exists(path):
        raise BuildError(f"{output} has no manifest.json: not a complete armdata build")
    return json.loads(storage.read_bytes(path))


def sha256_of(path: str, chunk: int = 8 << 20) -> str:
    digest = hashlib.sha256()
    with storage.open_read(path) as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def bad_shards(output: str, manifest: dict[str, Any]) -> list[str]:
    """Shards of the manifest that are missing or whose sha256 differs from the recorded one."""
    return [s["path"] for s in manifest["shards"]
            if not storage.exists(storage.join(output, s["path"]))
            or sha256_of(storage.join(output, s["path"])) != s["sha256"]]
