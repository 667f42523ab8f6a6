"""The Hugging Face dataset card (README.md) written beside the shards."""
from __future__ import annotations

import json
from typing import Any

from armdata.schemas.output import SCHEMA

COLUMN_DOCS = {
    "dataset": "source dataset (config name)",
    "episode_id": "`<config>/<tfds id>`, stable across runs",
    "step": "index of the step in the source episode (dropped steps leave gaps)",
    "num_steps": "length of the source episode",
    "instruction": "language instruction",
    "image": "primary camera frame: Image feature {bytes, path}, bytes encoded as in the source",
    "image_width": "frame width in pixels",
    "image_height": "frame height in pixels",
    "wrist_image": "wrist camera frame, Image feature (null if the source has none)",
    "state": "proprioceptive state (float32)",
    "action": "canonical action [dx, dy, dz, droll, dpitch, dyaw, gripper] (gripper 1 = open)",
    "action_normalized": "BOUNDS_Q99 normalized action in [-1, 1] (gripper passes through)",
    "action_bins": "7 bins in 1..256",
    "action_tokens": "Qwen2 token strings of the bins, `[t, t, ...]`",
    "action_chunk_bins": "bins of steps i..i+7 (8x7), padded with the last step",
    "action_chunk": "token strings of the chunk, `[[...], ...]`",
    "is_first": "first step of the source episode",
    "is_last": "last step of the source episode",
    "is_terminal": "terminal step",
    "depth_codes": "100 VQ-VAE depth codes in 0..127 (depth stage)",
    "depth_tokens": "`<DEPTH_START><DEPTH_k>...<DEPTH_END>` (depth stage)",
    "depth_png": "8-bit depth map, Image feature of a PNG (depth stage with --store-depth)",
    "gripper_xy": "gripper position in pixels (trace stage)",
    "gripper_visible": "gripper visible in this frame (trace stage)",
    "trace": "1-5 future gripper points, [x, y] in 0..255 (trace stage)",
    "trace_text": "`[[x, y], ...]` (trace stage)",
    "arm_traces": "bimanual robots: JSON with one trace per arm (trace stage)",
    "motion": "language motion over the next steps, SPEC §7 (reasoning stage)",
    "scene_caption": "VLM caption of the episode's first frame (reasoning stage)",
    "objects": "`phrase [x0, y0, x1, y1], ...` open-vocabulary detections (reasoning stage)",
    "object_scores": "the detector's score of each box in `objects` (reasoning stage)",
    "plan": "JSON list of the high-level plan steps that remain (reasoning stage)",
    "subtask": "current subtask (reasoning stage)",
    "subtask_reason": "why this subtask (reasoning stage)",
    "move_reason": "why this motion (reasoning stage)",
    "reasoning": "per-step ECoT text, SPEC §7 tag order (reasoning stage)",
    "episode_metadata": "JSON of the source's episode metadata",
}


def dataset_card(manifest: dict[str, Any], stats: dict[str, Any] | None, license: str = "other",
                 pretty_name: str | None = None) -> str:
    """`license` is a Hub license id (`armdata push --license`); "other" when the source's
    license applies and is not given."""
    counts = manifest["counts"]
    source = manifest["source"]
    name = manifest["config"]["name"]
    lines = [
        "---",
        f"license: {license}",
        f"pretty_name: {json.dumps(pretty_name or f'{name} for action reasoning models')}",
        "task_categories:",
        "- robotics",
        "configs:",
        "- config_name: default",
        "  data_files:",
        "  - split: train",
        '    path: "data/train-*.parquet"',
        "tags:",
        "- robotics",
        "- action-reasoning",
        f"- {manifest['config']['name']}",
        "---",
        "",
        f"# {pretty_name or f'{name} for action reasoning models'}",
        "",
        f"Built by armdata {manifest['armdata_version']} (schema v{manifest['schema_version']}) from "
        f"`{source['builder_name']}` {source['version']} split `{source['split']}` with stages "
        f"{', '.join(manifest['stages'])}.",
        "The license of the source dataset applies to this derived data.",
        "",
        "## Counts",
        "",
        "| | in | out | rejected |",
        "| --- | --- | --- | --- |",
        f"| episodes | {counts['episodes_in']} | {counts['episodes_out']} | "
        f"{counts['episodes_rejected']} |",
        f"| steps | {counts['steps_in']} | {counts['steps_out']} | {counts['steps_rejected']} |",
        "",
        f"{manifest['num_shards']} shards in `data/`; rejected items with their reasons are in "
        "`rejected/rejected.jsonl`; `manifest.json` lists every shard with its sha256.",
        "",
        "## How it was made",
        "",
        f"Config `{manifest['config']['name']}` (hash `{manifest['config_hash']}`); options of "
        "each stage, with the sha256 or Hub revision of every model and file it read:",
        "",
        "```json",
        json.dumps(manifest.get("stage_options", {}), indent=2, sort_keys=True),
        "```",
        "",
        "## Loading",
        "",
        "```python",
        "from datasets import load_dataset",
        'ds = load_dataset("parquet", data_files="data/train-*.parquet", split="train", '
        "streaming=True)",
        "```",
        "",
        "Actions are normalized with `dataset_statistics.json` (BOUNDS_Q99: q01/q99 per dimension,"
        " gripper unmasked), digitized into 256 bins and mapped to token ids `151643 - bin` of the"
        " Qwen2 vocabulary.",
        "",
        "## Columns",
        "",
        "| column | type | meaning |",
        "| --- | --- | --- |",
    ]
    lines += [f"| `{f.name}` | `{f.type}` | {COLUMN_DOCS[f.name]} |" for f in SCHEMA]
    if stats:
        entry = next(iter(stats.values()))
        lines += ["", "## Action statistics", "", "| | " + " | ".join(
            ["dx", "dy", "dz", "droll", "dpitch", "dyaw", "gripper"]) + " |",
            "| --- |" + " --- |" * 7]
        for key in ("q01", "q99", "mean", "std"):
            lines.append(f"| {key} | " + " | ".join(f"{v:.4g}" for v in entry["action"][key]) + " |")
        lines.append(f"\n{entry['num_transitions']} transitions in "
                     f"{entry['num_trajectories']} trajectories.")
    return "\n".join(lines) + "\n"
