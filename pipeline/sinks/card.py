"""The Hugging Face dataset card (README.md) written beside the shards."""
from __future__ import annotations

import json
from typing import Any

from armdata.schemas.output import SCHEMA
from armdata.wording import count

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


# The Hub's license ids as its table lists them,
# https://huggingface.co/docs/hub/repositories-licenses (source: github.com/huggingface/hub-docs,
# docs/hub/repositories-licenses.md, checked at commit 242f4a1, August 2026). Anything else is
# "other" with a license_name and license_link.
HUB_LICENSES = frozenset("""
    apache-2.0 mit openrail bigscience-openrail-m creativeml-openrail-m bigscience-bloom-rail-1.0
    bigcode-openrail-m afl-3.0 artistic-2.0 bsl-1.0 bsd bsd-2-clause bsd-3-clause
    bsd-3-clause-clear c-uda cc cc0-1.0 cc-by-2.0 cc-by-2.5 cc-by-3.0 cc-by-4.0 cc-by-sa-3.0
    cc-by-sa-4.0 cc-by-nc-2.0 cc-by-nc-3.0 cc-by-nc-4.0 cc-by-nd-4.0 cc-by-nc-nd-3.0
    cc-by-nc-nd-4.0 cc-by-nc-sa-2.0 cc-by-nc-sa-3.0 cc-by-nc-sa-4.0 cdla-sharing-1.0
    cdla-permissive-1.0 cdla-permissive-2.0 wtfpl ecl-2.0 epl-1.0 epl-2.0 etalab-2.0 eupl-1.1
    eupl-1.2 agpl-3.0 gfdl gpl gpl-2.0 gpl-3.0 lgpl lgpl-2.1 lgpl-3.0 isc h-research
    intel-research lppl-1.3c ms-pl apple-ascl apple-amlr mpl-2.0 odc-by odbl openmdw-1.0
    openmdw-1.1 openrail++ osl-3.0 postgresql ofl-1.1 ncsa unlicense zlib pddl lgpl-lr
    deepfloyd-if-license fair-noncommercial-research-license llama2 llama3 llama3.1 llama3.2
    llama3.3 llama4 grok2-community gemma unknown other""".split())
LICENSE_PATH = "LICENSE.md"
# upper bounds of the Hub's size_categories (rows)
SIZE_CATEGORIES = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                   (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M"),
                   (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B")]


def hub_license(license: str | None, config: dict[str, Any]) -> str:
    """The card's license id: `license` (push --license; ValueError for an id the Hub does not
    know, so that it is refused before anything is uploaded), else the config's `license:` as a
    Hub id (SPDX ids lower-cased), else "other"."""
    if license is not None:
        if license not in HUB_LICENSES:
            raise ValueError(f"--license {license!r} is not a Hub license id (e.g. cc-by-4.0, "
                             f"mit, apache-2.0; or other)")
        return license
    declared = str(config.get("license") or "").lower()
    return declared if declared in HUB_LICENSES else "other"


def license_text(manifest: dict[str, Any]) -> str:
    """LICENSE.md of a card whose license is "other" (its license_link)."""
    source, declared = manifest["source"], manifest["config"].get("license")
    return (f"# License\n\nThis dataset is derived from `{source['builder_name']}` "
            f"{source['version']}; the license of that source dataset applies"
            f"{f' ({declared})' if declared else ''}.\n")


def size_category(rows: int) -> str:
    return next((name for bound, name in SIZE_CATEGORIES if rows < bound), "n>1B")


def dataset_card(manifest: dict[str, Any], stats: dict[str, Any] | None,
                 license: str | None = None, pretty_name: str | None = None) -> str:
    """`license` is a Hub license id (`armdata push --license`); by default the config's; "other"
    (the source's license applies, named and linked) when neither says."""
    counts = manifest["counts"]
    source = manifest["source"]
    name = manifest["config"]["name"]
    license = hub_license(license, manifest["config"])
    other = [f"license_name: {name.lower().replace('_', '-')}-source-license",
             f"license_link: {LICENSE_PATH}"] if license == "other" else []
    lines = [
        "---",
        f"license: {license}",
        *other,
        "language:",
        "- en",
        "size_categories:",
        f"- {size_category(counts['steps_out'])}",
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
        f"{count(manifest['num_shards'], 'shard')} in `data/`; rejected items with their reasons are in "
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
