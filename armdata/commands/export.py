"""`armdata export OUTPUT --format F --out PATH`: convert a finished build into another trainer's
layout. One module per format with one function `fn(dataset_dir, out) -> summary dict`, registered
in EXPORTERS; all read the build through `armdata.exports.rows`."""
from __future__ import annotations

import argparse
import json
from typing import Any, Callable

from armdata.exports.ecot import export_ecot
from armdata.exports.lerobot import export_lerobot
from armdata.exports.molmoact import export_molmoact


# format → fn(dataset_dir, out) -> summary
EXPORTERS: dict[str, Callable[[str, str], dict[str, Any]]] = {
    "molmoact": export_molmoact,
    "lerobot": export_lerobot,
    "ecot": export_ecot,
}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("export", help="convert a built dataset to another trainer's layout")
    p.add_argument("output", help="a directory written by `armdata build`")
    p.add_argument("--format", required=True, choices=sorted(EXPORTERS),
                   help="molmoact: MolmoAct fine-tuning (datasets.save_to_disk + "
                        "dataset_statistics.json); lerobot: LeRobot v2.1, images in the Parquet; "
                        "ecot: ECoT's reasoning JSON (one file; needs the reasoning stage)")
    p.add_argument("--out", required=True, help="where to write the export")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    summary = EXPORTERS[args.format](args.output, args.out)
    print(json.dumps(summary, indent=2, sort_keys=True))
    return 0
