"""`armdata configs [--check SOURCE] [--config NAME] [--json]`: the bundled dataset configs, and
the preflight a build runs (config keys against the source's `features.json`) without building."""
from __future__ import annotations

import argparse
import json
import logging
from typing import Any

from armdata.pipeline.sinks import storage
from armdata.errors import UsageError
from armdata.pipeline.sources.features import check_config_keys, source_features
from armdata.schemas.config import ConfigError, DatasetConfig, available_configs, load_config

log = logging.getLogger(__name__)
EXAMPLE = "generic_example"   # documents the generic form; not a dataset


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("configs", help="list the bundled dataset configs, or check one "
                                              "against a source without building")
    p.add_argument("--check", metavar="SOURCE",
                   help="TFDS version directory (local or gs://) to check a config against")
    p.add_argument("--config", help="config name or YAML path for --check (default: the config "
                                    "named like the source's dataset)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def summary(config: DatasetConfig) -> dict[str, Any]:
    """What the listing shows of one config."""
    return {"name": config.name, "description": config.description,
            "action_space": config.action_space, "unsupported_reason": config.unsupported_reason,
            "standardize": config.standardize, "image": config.image_key,
            "wrist": config.wrist_image_key, "instruction": config.instruction_key,
            "fps": config.fps, "license": config.license, "source": config.source,
            "version": config.version}


def table(rows: list[dict[str, Any]]) -> str:
    columns = ("name", "action_space", "cameras", "fps", "license")
    cells = [[r["name"], r["action_space"], " + ".join(c for c in (r["image"], r["wrist"]) if c),
              "" if r["fps"] is None else f"{r['fps']:g}", r["license"] or ""] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(columns)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(columns, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)


def source_name(directory: str) -> str:
    """The dataset's name as `dataset_info.json` records it (the folder above the version
    otherwise)."""
    try:
        return json.loads(storage.read_bytes(storage.join(directory, "dataset_info.json")))["name"]
    except Exception:  # absent or unreadable: fall back on the folder name
        return directory.rstrip("/").split("/")[-2]


def check(directory: str, name: str | None) -> dict[str, Any]:
    """Load the config and check its keys against the source's features; raises on a problem."""
    name = name or source_name(directory)
    config = load_config(name)
    if source_features(directory) is None:
        raise UsageError(f"{directory}: no readable features.json to check config "
                         f"{config.name!r} against")
    check_config_keys(config, directory, arm_positions=False)   # what every build needs
    try:   # arm positions: only the trace and reasoning stages read them
        check_config_keys(config, directory)
        positions = "ok"
    except ConfigError as exc:
        positions = f"unusable for --stages trace/reasoning: {exc}"
    return {**summary(config), "checked": directory, "arm_positions": positions}


def run(args: argparse.Namespace) -> int:
    if args.check:
        report = check(args.check, args.config)
        if args.json:
            print(json.dumps(report, indent=2))
        else:
            note = "" if report["action_space"] != "unsupported" else \
                f" (but its action space is unsupported: {report['unsupported_reason']})"
            print(f"config {report['name']!r} matches {args.check}{note}")
            if report["arm_positions"] != "ok":
                print(f"arm positions: {report['arm_positions']}")
        return 0
    if args.config:
        raise UsageError("--config is for --check SOURCE")
    rows = [summary(load_config(n)) for n in available_configs() if n != EXAMPLE]
    print(json.dumps(rows, indent=2) if args.json else table(rows))
    return 0
