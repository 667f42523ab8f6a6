"""Publishing a finished job: its counters into the manifest, the last checks, the move to the
output, and the one-line summary."""
from __future__ import annotations

import argparse
import json
from typing import Any, Callable

from armdata.commands.build.checks import check_output
from armdata.commands.build.failure import check_result
from armdata.pipeline.sinks import storage
from armdata.pipeline.sinks.finalize import REJECTED_PATH, manifest_text
from armdata.wording import count


def publish(result: Any, staging: str, output: str, args: argparse.Namespace,
            still_ours: Callable[[], None]) -> dict[str, Any]:
    """Move the job's `staging` directory to the resolved `output` if its result passes
    `check_result` and the output is still this build's to replace; returns the manifest."""
    manifest = add_counters(staging, result)
    check_result(manifest, staging, args.output, args.max_reject_fraction)
    still_ours()
    check_output(output, args.overwrite)   # nothing appeared there meanwhile
    storage.publish(staging, output)
    return manifest


def summary(manifest: dict[str, Any], output: str) -> str:
    c = manifest["counts"]
    return (f"published {output}: {count(c['episodes_out'], 'episode')}, "
            f"{count(c['steps_out'], 'step')} in {count(manifest['num_shards'], 'shard')}; "
            f"rejected {count(c['episodes_rejected'], 'episode')}, "
            f"{count(c['steps_rejected'], 'step')} (reasons in "
            f"{storage.join(output, REJECTED_PATH)})")


def stage_counters(result: Any) -> dict[str, int]:
    """The stages' counters (e.g. why traces are null), summed over the graph's steps."""
    totals: dict[str, int] = {}
    for counter in result.metrics().query()["counters"]:
        key = f"{counter.key.metric.namespace}/{counter.key.metric.name}"
        totals[key] = totals.get(key, 0) + int(counter.committed or 0)
    return dict(sorted(totals.items()))


def add_counters(staging: str, result: Any) -> dict[str, Any]:
    """Put the job's counters into the finished manifest (written by the job's last step);
    returns the manifest."""
    path = storage.join(staging, "manifest.json")
    if not storage.exists(path):
        raise RuntimeError("the job finished without writing manifest.json")
    manifest = json.loads(storage.read_bytes(path))
    manifest["counters"] = stage_counters(result)
    manifest["episodes_reused"] = manifest["counters"].get("resume/episodes_reused", 0)
    storage.write_bytes(path, manifest_text(manifest).encode())
    return manifest
