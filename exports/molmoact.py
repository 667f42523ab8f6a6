"""MolmoAct fine-tuning layout (SPEC §6, §8): a `datasets.save_to_disk` directory with the columns
`language_instruction`, `depth` (depth text form), `trace` (`[[x, y], ...]`), `processed_action`
(JSON `{"chunked_action": <chunk text form>}`), `image`, `wrist_image`, plus the build's
`dataset_statistics.json` in the same directory.

A bimanual build (several config `arms`) also gets one column per arm, `trace_<arm name>`, in the
same form: MolmoAct's released loader reads only `trace` (the first arm, as in the build) and
writes it into both its left and right sentences, so a bimanual fine-tune reads these instead.

A build without the depth or trace stage is refused. A row without a trace (the gripper was never
found in its episode) gets "[]", as MolmoAct's own preprocessing writes it, counted as
`empty_trace` (per arm in `empty_arm_trace`); a row without depth (e.g. a corrupt frame) is
skipped and counted."""
from __future__ import annotations

import json
import logging
import os
import tempfile
from typing import Any, Iterator, Sequence

from armdata.pipeline.sinks import storage
from armdata.exports.rows import ExportError, iter_rows, require_empty
from armdata.pipeline.sinks.manifest import load_manifest
from armdata.schemas.output import arm_traces_of, image_bytes, trace_text

log = logging.getLogger(__name__)

COLUMNS = ["instruction", "depth_tokens", "trace_text", "action_chunk", "image", "wrist_image"]


EMPTY_TRACE = "[]"


def bimanual_arms(manifest: dict[str, Any]) -> list[str]:
    """The build's arm names when it has several (its config's `arms`), else []."""
    names = [arm["name"] for arm in manifest["config"].get("arms", [])]
    return names if len(names) > 1 else []


def arm_trace_texts(cell: str | None, arms: Sequence[str]) -> dict[str, str]:
    """`trace_<arm>` → that arm's trace text ("[]" without one) from an `arm_traces` cell."""
    traces = arm_traces_of(cell)
    return {f"trace_{arm}": trace_text(traces.get(arm) or []) for arm in arms}


def molmoact_row(row: dict[str, Any], arms: Sequence[str] = ()) -> dict[str, Any]:
    def image(cell: Any) -> dict[str, Any] | None:
        data = image_bytes(cell)
        return None if data is None else {"bytes": data, "path": None}

    out = {"language_instruction": row["instruction"], "depth": row["depth_tokens"],
           "trace": row["trace_text"] if row["trace_text"] is not None else EMPTY_TRACE,
           "processed_action": json.dumps({"chunked_action": row["action_chunk"]}),
           "image": image(row["image"]), "wrist_image": image(row["wrist_image"])}
    if arms:
        out.update(arm_trace_texts(row["arm_traces"], arms))
    return out


def export_molmoact(dataset_dir: str, out: str) -> dict[str, Any]:
    import datasets

    manifest = load_manifest(dataset_dir)
    missing = [s for s in ("depth", "trace") if s not in manifest["stages"]]
    if missing:
        raise ExportError(f"{dataset_dir} was built without the {' and '.join(missing)} "
                          f"stage(s) MolmoAct needs; rebuild with --stages actions,depth,trace")
    require_empty(out)
    arms = bimanual_arms(manifest)
    skipped = {"no_depth": 0}
    written = empty_trace = 0
    empty_arm_trace = dict.fromkeys(arms, 0)

    def rows() -> Iterator[dict[str, Any]]:
        nonlocal written, empty_trace
        for row in iter_rows(dataset_dir, COLUMNS + (["arm_traces"] if arms else [])):
            if row["depth_tokens"] is None:
                skipped["no_depth"] += 1
                continue
            written += 1
            empty_trace += row["trace_text"] is None
            item = molmoact_row(row, arms)
            for arm in arms:
                empty_arm_trace[arm] += item[f"trace_{arm}"] == EMPTY_TRACE
            yield item

    features = datasets.Features({
        "language_instruction": datasets.Value("string"), "depth": datasets.Value("string"),
        "trace": datasets.Value("string"),
        **{f"trace_{arm}": datasets.Value("string") for arm in arms},
        "processed_action": datasets.Value("string"),
        "image": datasets.Image(), "wrist_image": datasets.Image()})
    with tempfile.TemporaryDirectory(prefix="armdata-molmoact-") as cache:
        ds = datasets.Dataset.from_generator(rows, features=features, cache_dir=cache)
        ds.save_to_disk(out)
    with open(os.path.join(out, "dataset_statistics.json"), "wb") as f:
        f.write(storage.read_bytes(storage.join(dataset_dir, "dataset_statistics.json")))
    if any(skipped.values()):
        log.warning("skipped rows without depth: %s", skipped)
    summary = {"format": "molmoact", "out": out, "rows": written, "skipped": skipped,
               "empty_trace": empty_trace, "source_rows": manifest["counts"]["steps_out"]}
    if arms:
        summary["empty_arm_trace"] = empty_arm_trace
    return summary
