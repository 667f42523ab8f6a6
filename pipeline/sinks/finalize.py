"""The last step of a build: `rejected/rejected.jsonl`, `dataset_statistics.json`, `manifest.json`
and the dataset card, written into the staging directory once every shard exists."""
from __future__ import annotations

import hashlib
import json
import logging
from typing import Any, Iterator

import apache_beam as beam

from armdata.pipeline.sinks import storage
from armdata.pipeline.sinks.card import dataset_card
from armdata.pipeline.sources.rlds import READ_STAGE, SliceReport, shard_damage
from armdata.pipeline.sinks.writer import rejection_lines
from armdata.schemas.episode import Rejection
from armdata.schemas.stats import dumps_stats

log = logging.getLogger(__name__)

REJECTED_PATH = "rejected/rejected.jsonl"
STATISTICS_PATH = "dataset_statistics.json"
CARD_PATH = "README.md"
MANIFEST_PATH = "manifest.json"


def file_entry(path: str, data: bytes) -> dict[str, Any]:
    """A `files` entry of the manifest: what `push` and `inspect --verify` check the file against."""
    return {"path": path, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def manifest_text(manifest: dict[str, Any]) -> str:
    return json.dumps(manifest, indent=2, sort_keys=True) + "\n"


def build_counts(inputs: dict[str, int], shards: list[dict[str, Any]],
                 rejections: list[Rejection], unread: int = 0) -> dict[str, int]:
    """Counts where `in = out + rejected` can be checked: inputs are counted at the source,
    outputs in the written shards and rejections in rejected/, independently. `unread` episodes
    (planned from damaged or missing source shards but not read; their step counts are unknown)
    are in both `episodes_in` and `episodes_rejected`, through their shards' dead letters."""
    steps_in = inputs.get("steps_source", 0) - inputs.get("steps_dropped_by_config", 0)
    return {
        "episodes_in": inputs.get("episodes_in", 0) + unread,
        "episodes_out": sum(s["episodes"] for s in shards),
        "episodes_rejected": unread + sum(1 for r in rejections
                                          if r.step is None and r.stage != READ_STAGE),
        "episodes_unread": unread,
        "steps_in": steps_in,
        "steps_out": sum(s["rows"] for s in shards),
        "steps_rejected": sum(r.steps for r in rejections),
        "steps_source": inputs.get("steps_source", 0),
        "steps_dropped_by_config": inputs.get("steps_dropped_by_config", 0),
    }


def counts_consistent(c: dict[str, int]) -> bool:
    return (c["episodes_in"] == c["episodes_out"] + c["episodes_rejected"]
            and c["steps_in"] == c["steps_out"] + c["steps_rejected"])


class Finalize(beam.DoFn):
    def __init__(self, staging: str, manifest_base: dict[str, Any]) -> None:
        self.staging = staging
        self.manifest_base = manifest_base

    def process(self, _: None, shards: list[dict[str, Any]], inputs: dict[str, int],
                stats: dict[str, Any] | None, rejections: list[Rejection],
                reports: list[SliceReport]) -> Iterator[str]:
        shards = sorted(shards, key=lambda s: s["path"])
        dead, unread = shard_damage(reports, self.manifest_base["config"]["name"])
        rejections = rejections + dead
        counts = build_counts(inputs, shards, rejections, unread)
        if not counts_consistent(counts):
            raise RuntimeError(f"accounting mismatch, refusing to publish: {counts}")
        written = {REJECTED_PATH: rejection_lines(rejections).encode()}
        stats_text = dumps_stats(stats) if stats is not None else "{}\n"
        if stats is None:
            log.warning("no usable transitions: every episode was rejected (see %s)", REJECTED_PATH)
        written[STATISTICS_PATH] = stats_text.encode()
        manifest = dict(self.manifest_base)
        manifest.update({
            "counts": counts,
            "rejected": {"path": REJECTED_PATH, "by_stage": _by_stage(rejections)},
            "statistics": STATISTICS_PATH,
            "num_shards": len(shards),
            "shards": [{k: s[k] for k in ("path", "rows", "episodes", "sha256", "bytes")}
                       for s in shards],
        })
        written[CARD_PATH] = dataset_card(manifest, stats).encode()
        for rel, data in written.items():
            storage.write_bytes(storage.join(self.staging, rel), data)
        # Every file but the manifest itself, checked by `push` and `inspect --verify`.
        manifest["files"] = sorted(
            [file_entry(rel, data) for rel, data in written.items()]
            + [{k: s[k] for k in ("path", "bytes", "sha256")} for s in shards],
            key=lambda f: f["path"])
        # The manifest is written last: its presence marks a complete dataset.
        storage.write_bytes(storage.join(self.staging, MANIFEST_PATH),
                            manifest_text(manifest).encode())
        yield MANIFEST_PATH


def _by_stage(rejections: list[Rejection]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for r in rejections:
        stage = out.setdefault(r.stage, {"records": 0, "steps": 0})
        stage["records"] += 1
        stage["steps"] += r.steps
    return dict(sorted(out.items()))
