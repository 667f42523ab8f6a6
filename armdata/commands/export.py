"""`armdata export OUTPUT --format F --out PATH`: convert a finished build into another trainer's
layout. One module per format with one function `fn(dataset_dir, out, **options) -> summary dict`,
registered in EXPORTERS with the names of the options it takes; all read the build through
`armdata.exports.rows`."""
from __future__ import annotations

import argparse
import json
from typing import Any, Callable

from armdata.exports.ecot import export_ecot
from armdata.exports.lerobot import export_lerobot
from armdata.exports.molmoact import export_molmoact


# format → (fn(dataset_dir, out, **options) -> summary, the option names it takes)
EXPORTERS: dict[str, tuple[Callable[..., dict[str, Any]], tuple[str, ...]]] = {
    "molmoact": (export_molmoact, ()),
    "lerobot": (export_lerobot, ("lerobot_version", "lerobot_video", "lerobot_codec")),
    "ecot": (export_ecot, ("allow_missing_parts",)),
}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("export", help="convert a built dataset to another trainer's layout")
    p.add_argument("output", help="a directory written by `armdata build`")
    p.add_argument("--format", required=True, choices=sorted(EXPORTERS),
                   help="molmoact: MolmoAct fine-tuning (datasets.save_to_disk + "
                        "dataset_statistics.json); lerobot: LeRobot v3.0 (or v2.1), as "
                        "LeRobotDataset reads it; "
                        "ecot: ECoT's reasoning JSON (one file; needs the reasoning and trace "
                        "stages)")
    p.add_argument("--out", required=True, help="where to write the export (must not exist, or "
                                                "be an empty directory)")
    p.add_argument("--allow-missing-parts", action="store_true",
                   help="ecot: export a build without some reasoning parts, writing \"\" for "
                        "them (named in the summary) instead of refusing")
    p.add_argument("--lerobot-version", choices=["3.0", "2.1"], default="3.0",
                   help="lerobot: 3.0 (lerobot >= 0.4, the default) or 2.1 (lerobot 0.3.x, "
                        "MolmoAct's preprocessing)")
    cameras = p.add_mutually_exclusive_group()
    cameras.add_argument("--lerobot-video", dest="lerobot_video", action="store_true",
                         default=None, help="lerobot: cameras as mp4 video (default for 3.0)")
    cameras.add_argument("--lerobot-images", dest="lerobot_video", action="store_false",
                         help="lerobot: cameras as images in the Parquet (default for 2.1)")
    p.add_argument("--lerobot-codec", choices=["h264", "av1"], default="h264",
                   help="lerobot: the video codec (PyAV: libx264 or libsvtav1)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    fn, names = EXPORTERS[args.format]
    summary = fn(args.output, args.out, **{n: getattr(args, n) for n in names})
    print(json.dumps(summary, indent=2, sort_keys=True))
    return 0
