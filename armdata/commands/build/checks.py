"""Every check of `armdata build` that needs no Beam work: config, options, output, source,
statistics, models and the files the stages read; their result is the build's plan and manifest."""
from __future__ import annotations

import argparse
import glob
import logging
import os
from typing import Any

import armdata
from armdata.commands.build.options import check_options, make_stages, parse_stages
from armdata.errors import BuildError
from armdata.models.hub import check_models
from armdata.pipeline.sinks import storage
from armdata.pipeline.sources.features import check_config_keys
from armdata.pipeline.sources.lerobot import LeRobotPlan, is_lerobot, plan_lerobot
from armdata.pipeline.sources.rlds import plan_source
from armdata.schemas.config import load_config
from armdata.schemas.output import SCHEMA_VERSION
from armdata.schemas.stats import load_stats
from armdata.transforms.base import Stage

log = logging.getLogger(__package__)   # the command's name, as for every line of the build


def check_output_path(output: str) -> None:
    """A local output must be a folder that can be created and replaced as a whole."""
    if not output.strip():
        raise BuildError("--output is empty: name the folder to write")
    if not storage.is_local(output):
        return
    target = storage.resolve(output)
    if storage.contains(target, os.getcwd()):
        raise BuildError(f"output {output} is the current directory or holds it; publishing "
                         f"replaces the whole folder: choose a new folder inside it")
    if os.path.exists(target) and not os.path.isdir(target):
        raise BuildError(f"output {output} exists and is not a directory")
    parent = os.path.dirname(target)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise BuildError(f"output {output} cannot be created: {parent} is a file")


def check_output(output: str, overwrite: bool) -> None:
    """What may be written to `output`: nothing there, or with --overwrite an armdata output
    (proven by its content, see `storage.why_not_armdata_output`). Checked before the job and
    again, under the output's lock, before publishing."""
    check_output_path(output)
    if not storage.is_nonempty_dir(output):
        return
    if not overwrite:
        raise BuildError(f"output {output} is not empty; pass --overwrite to replace it")
    why = storage.why_not_armdata_output(output)
    if why:
        raise BuildError(f"output {output} is not an armdata output ({why}); --overwrite only "
                         f"replaces armdata outputs, so nothing was deleted: empty it yourself "
                         f"or choose another --output")


def stage_options(stages: list[Stage]) -> dict[str, Any]:
    """Each stage's options (checking the files it will read), as the manifest records them."""
    options = {}
    for stage in stages:
        try:
            options[stage.name] = stage.options()
        except (OSError, ValueError, RuntimeError) as exc:
            raise BuildError(f"{stage.name} stage: {exc}") from exc
    return options


def prepare(args: argparse.Namespace) -> dict[str, Any]:
    """Every check that needs no Beam work. Raises BuildError/ConfigError/SourceError."""
    config = load_config(args.config)
    if config.action_space == "unsupported":
        raise BuildError(f"config {config.name!r}: unsupported action space: "
                         f"{config.unsupported_reason}")
    names = parse_stages(args.stages)
    check_options(args)
    if storage.contains(args.output, args.source):
        raise BuildError(f"the source {args.source} is inside the output {args.output}; "
                         f"choose an --output outside the source")
    check_output(args.output, args.overwrite)
    if storage.is_local(args.output):
        previous = storage.resolve(args.output) + storage.PREVIOUS_MARK
        for kept in sorted(glob.glob(previous + "*")):
            log.warning("%s holds an earlier output of %s, kept by a build that was stopped "
                        "while publishing; delete it once you do not need it", kept, args.output)
    if is_lerobot(args.source):
        plan = plan_lerobot(args.source, args.split, args.max_episodes)
    else:
        plan = plan_source(args.source, args.split, args.max_episodes, strict=args.strict)
        # after: a wrong --source is one line; arm positions matter to trace and reasoning only
        check_config_keys(config, args.source, bool({"trace", "reasoning"} & set(names)))
    if plan.num_episodes == 0:
        raise BuildError(f"split {args.split!r} of {args.source} selects no episode")
    stats = None
    if args.stats:
        try:
            stats = {config.name: load_stats(args.stats, config.name, config.version)}
        except (OSError, ValueError) as exc:
            raise BuildError(f"--stats {args.stats}: {exc}") from exc
    stages = make_stages(args, config, names)
    check_models({flag: name for stage in stages for flag, name in stage.models().items()},
                 "; ".join(f"{s.name}: {s.offline}" for s in stages if s.models()))
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "armdata_version": armdata.__version__,
        "config": config.to_dict(),
        "config_hash": config.hash(),
        "source": {"directory": plan.directory, "builder_name": plan.builder_name,
                   "version": plan.version, "split": plan.split,
                   "max_episodes": args.max_episodes, "episodes_planned": plan.num_episodes,
                   **({"format": "lerobot", "fps": plan.fps} if isinstance(plan, LeRobotPlan)
                      else {})},
        "stages": ["actions", *names],
        "stage_options": stage_options(stages),
        "statistics_source": args.stats or "computed",
    }
    return {"config": config, "plan": plan, "stats": stats, "stages": stages,
            "manifest": manifest}
