"""`armdata build`'s own options: their definitions, the stage list, value checks."""
from __future__ import annotations

import argparse
import importlib
from typing import Any

from armdata.errors import BuildError
from armdata.pipeline import resume
from armdata.schemas.config import DatasetConfig
from armdata.transforms.base import Stage
from armdata.transforms.validate import ValidateStage

# Optional stages in graph order: name → module exposing add_build_arguments / stage_from_args.
STAGE_MODULES = {"depth": "armdata.transforms.depth", "trace": "armdata.transforms.trace",
                 "reasoning": "armdata.transforms.reasoning"}


def stage_module(name: str) -> Any:
    return importlib.import_module(STAGE_MODULES[name])


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The build's options, resume's and every stage's (Beam's pass through: see `runner`)."""
    p.add_argument("--config", required=True, help="bundled config name or path to a YAML file")
    p.add_argument("--source", required=True,
                   help="TFDS dataset version directory (local or gs://), e.g. .../1.0.0, or a "
                        "LeRobot v2.1/v3.0 dataset directory (with meta/info.json)")
    p.add_argument("--output", required=True, help="output directory (local or gs://)")
    p.add_argument("--split", default="train", help="split expression, e.g. train or train[:10%%]")
    p.add_argument("--max-episodes", type=int, help="read at most this many episodes")
    p.add_argument("--stats", help="use this dataset_statistics.json instead of computing one")
    p.add_argument("--stages", default="actions",
                   help=f"comma-separated: actions (always) plus any of {', '.join(STAGE_MODULES)}")
    p.add_argument("--num-shards", type=int,
                   help="number of Parquet shards (default: by size, ~384 MB uncompressed each)")
    p.add_argument("--min-shards", type=int, default=1,
                   help="lower bound for the automatic shard count, e.g. GPUs x loader workers")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing armdata output (proven by its manifest.json, "
                        "which must list every file in the folder); anything else is never "
                        "deleted")
    p.add_argument("--max-reject-fraction", type=float, default=0.5,
                   help="fail (publish nothing) when more than this fraction of the input "
                        "episodes or steps is rejected (default 0.5)")
    p.add_argument("--strict", action="store_true",
                   help="a missing source shard fails before the job; a damaged one (truncated, "
                        "CRC error) still gives an output but exit status 1")
    resume.add_build_arguments(p)
    for name in STAGE_MODULES:
        stage_module(name).add_build_arguments(p.add_argument_group(f"{name} stage"))


def parse_stages(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    unknown = sorted(set(names) - {"actions", *STAGE_MODULES})
    if unknown:
        raise BuildError(f"unknown stage(s) {unknown}; choose from actions, "
                         f"{', '.join(STAGE_MODULES)}")
    return [n for n in STAGE_MODULES if n in names]


def make_stages(args: argparse.Namespace, config: DatasetConfig, names: list[str]) -> list[Stage]:
    return [ValidateStage(config)] + [stage_module(n).stage_from_args(args, config) for n in names]


def check_options(args: argparse.Namespace) -> None:
    for name in ("max_episodes", "num_shards", "min_shards"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise BuildError(f"--{name.replace('_', '-')} must be positive, got {value}")
    if not 0.0 <= args.max_reject_fraction <= 1.0:
        raise BuildError(f"--max-reject-fraction must be in [0, 1], got {args.max_reject_fraction}")
