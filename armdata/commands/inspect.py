"""`armdata inspect OUTPUT`: counts, columns, statistics, a few decoded rows and the
token ↔ bin round trip of a built dataset. Reads one row group at a time."""
from __future__ import annotations

import argparse
import json
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from armdata.errors import BuildError
from armdata.wording import count
from armdata.pipeline.sinks import storage
from armdata.pipeline.sinks.finalize import MANIFEST_PATH, STATISTICS_PATH, counts_consistent
from armdata.pipeline.sinks.manifest import file_problems, load_manifest
from armdata.transforms.actions import bin_strings, decode


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("inspect", help="summarize and check a built dataset")
    p.add_argument("output", help="a directory written by `armdata build`")
    p.add_argument("--rows", type=int, default=3, help="rows to print decoded")
    p.add_argument("--verify", action="store_true",
                   help="recompute the sha256 of every file the manifest lists")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def parse_tokens(text: str) -> list[str]:
    """`[t, t, ...]` → token strings. Tokens never contain ', ' (they are single BPE tokens
    written with the byte-level alphabet, which has no space)."""
    return text[1:-1].split(", ")


def row_round_trip(row: dict[str, Any], lookup: dict[str, int]) -> bool:
    """Tokens ↔ bins for a step and its chunk."""
    bins = [lookup[t] for t in parse_tokens(row["action_tokens"])]
    chunk = [[lookup[t] for t in parse_tokens("[" + part.strip("[]") + "]")]
             for part in row["action_chunk"][1:-1].split("], [")]
    return bins == row["action_bins"] and chunk == row["action_chunk_bins"]


COLUMNS = ["episode_id", "step", "instruction", "action", "action_normalized", "action_bins",
           "action_tokens", "action_chunk", "action_chunk_bins", "depth_tokens", "trace_text",
           "gripper_xy", "image_width", "image_height", "motion", "reasoning"]


def shard_rows(path: str) -> Iterator[dict[str, Any]]:
    """The rows of one shard, a row group at a time; a shard Parquet cannot read (truncated,
    overwritten) is one BuildError naming it."""
    try:
        with storage.open_read(path) as f:
            pf = pq.ParquetFile(f)
            for g in range(pf.num_row_groups):
                yield from pf.read_row_group(g, columns=COLUMNS).to_pylist()
    except (pa.ArrowException, OSError) as exc:
        raise BuildError(f"{path} is not a readable shard ({exc}); `armdata inspect --verify` "
                         f"checks every file against the manifest") from exc


def report(output: str, rows: int, verify: bool) -> dict[str, Any]:
    manifest = load_manifest(output)
    problems = file_problems(output, manifest) if verify else {}

    def damaged(rel: str) -> bool:   # verified bad: reported, not read
        return any(rel == k or rel.startswith(k + "/") for k in problems)

    stats = {} if damaged(STATISTICS_PATH) else json.loads(
        storage.read_bytes(storage.join(output, STATISTICS_PATH)))
    entry = stats.get(manifest["config"]["name"])
    lookup = {s: b for b, s in enumerate(bin_strings(), start=1)}
    checked = mismatched = 0
    max_decode_err = 0.0
    samples: list[dict[str, Any]] = []
    readable = [s["path"] for s in manifest["shards"] if not damaged(s["path"])]
    for rel in readable:
        for row in shard_rows(storage.join(output, rel)):
            checked += 1
            mismatched += not row_round_trip(row, lookup)
            if entry is not None:
                a = entry["action"]
                dec = decode(np.array([row["action_bins"]]), a["q01"], a["q99"], a["mask"])
                clipped = np.clip(row["action"], a["q01"], a["q99"])
                err = np.abs(dec[0] - clipped)[np.array(a["mask"])]
                max_decode_err = max(max_decode_err, float(err.max(initial=0.0)))
            if len(samples) < rows:
                samples.append(row)
    c = manifest["counts"]
    return {"output": output, "counts": c, "consistent": counts_consistent(c),
            "num_shards": manifest["num_shards"], "verified": verify,
            "files_bad": [f"{rel} {why}" for rel, why in problems.items()],
            "files_listed": len(manifest.get("files", [])),
            "columns": [f.name for f in pq.read_schema(storage.open_read(
                storage.join(output, readable[0])))] if readable else [],
            "statistics": entry, "rows_checked": checked, "round_trip_mismatches": mismatched,
            "max_decode_error_within_q01_q99": max_decode_err, "samples": samples,
            "rejected_by_stage": manifest["rejected"]["by_stage"],
            "counters": manifest.get("counters", {}),
            "stage_options": manifest.get("stage_options", {})}


def run(args: argparse.Namespace) -> int:
    rep = report(args.output, args.rows, args.verify)
    if args.json:
        print(json.dumps(rep, indent=2, default=str))
    else:
        print_report(rep)
    return 0 if passed(rep) else 1


def passed(rep: dict[str, Any]) -> bool:
    """Consistent counts, every row's tokens round-trip, every listed file's sha256 (with
    --verify), and rows at all."""
    return (rep["consistent"] and not rep["round_trip_mismatches"]
            and not rep["files_bad"] and rep["rows_checked"] > 0)


def print_report(rep: dict[str, Any]) -> None:
    c = rep["counts"]
    print(f"dataset: {rep['output']}  ({count(rep['num_shards'], 'shard')})")
    print(f"episodes: in {c['episodes_in']} = out {c['episodes_out']} + rejected "
          f"{c['episodes_rejected']}")
    print(f"steps:    in {c['steps_in']} = out {c['steps_out']} + rejected {c['steps_rejected']}"
          f"   ({'consistent' if rep['consistent'] else 'INCONSISTENT'})")
    for stage, n in rep["rejected_by_stage"].items():
        print(f"  rejected at {stage}: {n['records']} records, {n['steps']} steps")
    for stage, options in rep["stage_options"].items():
        if options:
            print(f"{stage} options: {json.dumps(options, sort_keys=True)}")
    if rep["counters"]:
        print("counters: " + ", ".join(f"{k}={v}" for k, v in rep["counters"].items()))
    frames = rep["counters"].get("trace/frames", 0)
    if frames:   # what tracking saved: the share of frames the localizer was asked about
        calls = rep["counters"].get("trace/localizer_calls", 0)
        fitted = rep["counters"].get("trace/state_fit_positions", 0)
        print(f"trace: localizer asked on {calls}/{frames} frames ({calls / frames:.1%})"
              + (f"; {fitted} visible positions refined by the state fit" if fitted else ""))
    print("columns: " + ", ".join(rep["columns"]))
    if rep["statistics"]:
        a = rep["statistics"]["action"]
        print(f"statistics: {rep['statistics']['num_transitions']} transitions, "
              f"{rep['statistics']['num_trajectories']} trajectories")
        for key in ("q01", "q99", "mean", "std"):
            print(f"  {key:5s} " + " ".join(f"{v:+.4f}" for v in a[key]))
    print(f"token <-> bin round trip: {rep['rows_checked'] - rep['round_trip_mismatches']}/"
          f"{rep['rows_checked']} rows ok; max |decode(bins) - action| within [q01, q99]: "
          f"{rep['max_decode_error_within_q01_q99']:.5f}")
    if rep["rows_checked"] == 0:
        print("EMPTY: the dataset has no rows")
    if rep["files_bad"]:
        print("VERIFY FAILED: " + "; ".join(rep["files_bad"]))
    elif rep["verified"]:
        print(f"verified: {count(rep['files_listed'], 'file')} "
              f"({count(rep['num_shards'], 'shard')}) match their sha256 in {MANIFEST_PATH}")
    for row in rep["samples"]:
        print(f"- {row['episode_id']} step {row['step']} ({row['image_width']}x"
              f"{row['image_height']}): {row['instruction']!r}")
        print(f"    action     {np.round(row['action'], 4).tolist()}")
        print(f"    bins       {row['action_bins']}   tokens {row['action_tokens']}")
        if row["depth_tokens"]:
            print(f"    depth      {row['depth_tokens'][:80]}...")
        if row["trace_text"]:
            print(f"    trace      {row['trace_text']}  gripper_xy {row['gripper_xy']}")
        if row["motion"]:
            print(f"    motion     {row['motion']}")
        if row["reasoning"]:
            print(f"    reasoning  {row['reasoning']}")
