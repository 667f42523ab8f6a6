"""`armdata build`: check everything that can be checked before any Beam work, run the graph into
a staging directory under the output's lock, publish it to the output only when the job succeeded
and its result passes the rejection threshold."""
from __future__ import annotations

import argparse
import collections
import contextlib
import errno
import glob
import importlib
import json
import logging
import os
import sys
import threading
from typing import Any, Iterator

import tqdm

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.portability import python_urns
from apache_beam.runners.portability.fn_api_runner import fn_runner
from apache_beam.runners.runner import PipelineState

import armdata
from armdata.pipeline import resume
from armdata.pipeline.sinks import storage
from armdata.errors import BuildError, BuildFailed, UsageError, causes
from armdata.wording import count
from armdata.models.hub import check_models
from armdata.pipeline.sources.features import check_config_keys
from armdata.schemas.config import DatasetConfig, load_config
from armdata.pipeline.sinks.finalize import REJECTED_PATH, manifest_text
from armdata.pipeline.graph import build_graph
from armdata.pipeline.identity import build_identity
from armdata.pipeline.sources.lerobot import LeRobotPlan, is_lerobot, plan_lerobot
from armdata.pipeline.sources.rlds import plan_source
from armdata.schemas.output import SCHEMA_VERSION
from armdata.schemas.stats import load_stats
from armdata.transforms.base import Stage
from armdata.transforms.validate import ValidateStage

log = logging.getLogger(__name__)

# Optional stages in graph order: name → module exposing add_build_arguments / stage_from_args.
STAGE_MODULES = {"depth": "armdata.transforms.depth", "trace": "armdata.transforms.trace",
                 "reasoning": "armdata.transforms.reasoning"}


FAILED_SUFFIX = ".armdata-failed"   # beside the output: what a build that was not published found
# A local actions-only build of at most this many episodes runs in the launcher's process unless
# Beam options say otherwise (`runs_in_process`); measured on 2 cores, see README "Benchmarks".
IN_PROCESS_MAX_EPISODES = 150


def stage_module(name: str) -> Any:
    return importlib.import_module(STAGE_MODULES[name])


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "build", help="build a dataset from an RLDS source",
        description="Build sharded Parquet from an RLDS dataset. Unknown options are passed to "
                    "Beam (e.g. --runner DataflowRunner --project P --region R "
                    "--temp_location gs://... --setup_file ./setup.py).")
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
    p.set_defaults(func=run, accepts_beam_args=True)


def parse_stages(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    unknown = sorted(set(names) - {"actions", *STAGE_MODULES})
    if unknown:
        raise BuildError(f"unknown stage(s) {unknown}; choose from actions, "
                         f"{', '.join(STAGE_MODULES)}")
    return [n for n in STAGE_MODULES if n in names]


def make_stages(args: argparse.Namespace, config: DatasetConfig, names: list[str]) -> list[Stage]:
    return [ValidateStage(config)] + [stage_module(n).stage_from_args(args, config) for n in names]


def unknown_beam_args(beam_args: list[str]) -> tuple[list[str], list[str]]:
    """(the arguments no Beam PipelineOptions class knows, every Beam option name)."""
    from apache_beam.options.pipeline_options import _BeamArgumentParser

    parser = _BeamArgumentParser(allow_abbrev=False)
    classes = {str(cls): cls for cls in PipelineOptions.__subclasses__()}
    for cls in classes.values():
        cls._add_argparse_args(parser)
    _, unknown = parser.parse_known_args(beam_args)
    return unknown, sorted(parser._option_string_actions)


def runs_in_process(manifest: dict[str, Any]) -> bool:
    """Whether a local build without Beam worker options runs in the launcher's process: an
    actions-only build of at most IN_PROCESS_MAX_EPISODES planned episodes, for which starting
    worker processes costs more than they save (README "Benchmarks")."""
    return (manifest["stages"] == ["actions"]
            and manifest["source"]["episodes_planned"] <= IN_PROCESS_MAX_EPISODES)


def beam_options(beam_args: list[str], in_process: bool = False) -> PipelineOptions:
    """Beam options from the pass-through arguments; locally: DirectRunner semantics on all cores,
    or with `in_process` (DirectRunner only) in this process alone, unless the arguments name
    either."""
    args = list(beam_args)
    if not any(a.startswith("--runner") for a in args):
        args.append("--runner=DirectRunner")
    named = any(a.startswith(("--direct_running_mode", "--direct_num_workers")) for a in args)
    direct = PipelineOptions(args).view_as(StandardOptions).runner == "DirectRunner"
    mode, workers = (("in_memory", 1) if in_process and direct and not named
                     else ("multi_processing", os.cpu_count() or 1))
    if not any(a.startswith("--direct_running_mode") for a in args):
        args.append(f"--direct_running_mode={mode}")
    if not any(a.startswith("--direct_num_workers") for a in args):
        args.append(f"--direct_num_workers={workers}")
    return PipelineOptions(args)


def make_runner(options: PipelineOptions) -> Any:
    """For DirectRunner, run Beam's portable in-process runner (FnApiRunner) directly, which is
    what DirectRunner picks for batch jobs after first trying to download the Prism binary —
    a download that offline machines cannot make. Any other runner is used as named."""
    runner = options.view_as(StandardOptions).runner
    if runner not in (None, "DirectRunner"):
        return None
    from apache_beam.portability.api import beam_provision_api_pb2
    from apache_beam.runners.portability.portable_runner import JobServiceHandle

    encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
    return LocalRunner(provision_info=fn_runner.ExtendedProvisionInfo(
        beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded)))


class LocalRunner(fn_runner.FnApiRunner):
    """FnApiRunner whose worker processes start through `armdata.beam_worker`, which sets up
    armdata's logging before Beam's worker logs anything (see `armdata.logs`)."""

    def run_via_runner_api(self, pipeline_proto: Any, options: PipelineOptions) -> Any:
        for env in pipeline_proto.components.environments.values():
            if env.urn == python_urns.SUBPROCESS_SDK:
                env.payload = f"{sys.executable} -m armdata.beam_worker".encode()
        return super().run_via_runner_api(pipeline_proto, options)


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


def check_options(args: argparse.Namespace) -> None:
    for name in ("max_episodes", "num_shards", "min_shards"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise BuildError(f"--{name.replace('_', '-')} must be positive, got {value}")
    if not 0.0 <= args.max_reject_fraction <= 1.0:
        raise BuildError(f"--max-reject-fraction must be in [0, 1], got {args.max_reject_fraction}")


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


@contextlib.contextmanager
def progress(spill: str, episodes: int) -> Iterator[None]:
    """A progress bar for local builds: counts the episodes finished so far (reused included)."""
    if not storage.is_local(spill):
        yield
        return
    stop = threading.Event()

    def watch() -> None:
        with tqdm.tqdm(total=episodes, unit="episode", desc="episodes through all stages",
                       mininterval=1.0) as bar:
            while True:   # one last count after the build: a fast build ends at N/N, not 0/N
                stopped = stop.wait(1.0)
                bar.update(resume.count_finished(spill) - bar.n)
                if stopped:
                    return

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def run(args: argparse.Namespace, beam_args: list[str] | None = None) -> int:
    ready = prepare(args)
    output = storage.resolve(args.output)   # every alias of the folder: one lock, one target
    with storage.output_lock(output) as still_ours:
        work, key = resume.prepare_work_dir(output, ready["manifest"],
                                            build_identity(ready["plan"]), not args.no_resume,
                                            args.clean_stale)
        staging = storage.staging_dir(output)
        log.info("building %s episodes of %s into %s (staging %s, work %s)",
                 ready["plan"].num_episodes, ready["plan"].builder_name, args.output, staging, work)
        try:
            options = beam_options(beam_args or [], runs_in_process(ready["manifest"]))
            p = beam.Pipeline(runner=make_runner(options), options=options)
            build_graph(p, ready["plan"], ready["config"], ready["stages"], staging,
                        ready["stats"], args.num_shards, args.min_shards, ready["manifest"],
                        work, key)
            with progress(resume.episodes_dir(work), ready["plan"].num_episodes):
                result = p.run()
                state = result.wait_until_finish()
            if state != PipelineState.DONE:
                raise RuntimeError(f"the Beam job ended in state {state}")
            manifest = add_counters(staging, result)
            check_result(manifest, staging, args.output, args.max_reject_fraction)
            still_ours()
            check_output(output, args.overwrite)   # nothing appeared there meanwhile
            storage.publish(staging, output)
        except BaseException as exc:
            storage.delete_tree(staging)
            kept = (f"nothing was published to {args.output}; finished episodes are kept in "
                    f"{work} for a rerun of the same command")
            if not storage.is_nonempty_dir(resume.episodes_dir(work)):   # only its identity.json
                storage.delete_tree(work)
                kept = f"nothing was published to {args.output} and no episode was finished"
            if any(isinstance(e, KeyboardInterrupt) for e in causes(exc)):   # Ctrl-C
                raise KeyboardInterrupt(kept) from exc
            full = disk_full(exc)
            if full:
                raise BuildFailed(f"disk full ({full}); {kept} once there is space") from exc
            if not isinstance(exc, (BuildFailed, UsageError)):   # those say so themselves
                log.error("build failed; %s", kept)
            raise
        storage.delete_tree(work)
    storage.delete_tree(failed_dir(output))   # an earlier failed attempt's report
    print(summary(manifest, args.output))
    unread = manifest["counts"]["episodes_unread"]
    if unread and args.strict:
        print(f"armdata: error: {unread} episodes of damaged source shards were not read (see "
              f"{storage.join(args.output, REJECTED_PATH)}); failing because of --strict",
              file=sys.stderr)
        return 1
    return 0


def disk_full(exc: BaseException) -> str | None:
    """The "no space left" message if the build failed for lack of disk space: an ENOSPC
    OSError here, or its text in the error a worker process sent back."""
    errors = list(causes(exc))
    ours = [e for e in errors if isinstance(e, OSError) and e.errno == errno.ENOSPC]
    if ours:
        return str(ours[0])
    text = os.strerror(errno.ENOSPC)
    return text if any(text in str(e) for e in errors) else None


def failed_dir(output: str) -> str:
    return output.rstrip("/") + FAILED_SUFFIX


def reject_fraction(counts: dict[str, int]) -> float:
    """The larger of the rejected fractions of input episodes and input steps."""
    return max(counts["episodes_rejected"] / max(counts["episodes_in"], 1),
               counts["steps_rejected"] / max(counts["steps_in"], 1))


def check_result(manifest: dict[str, Any], staging: str, output: str, max_fraction: float) -> None:
    """Refuse to publish a dataset without rows, or one that rejected more than `max_fraction`
    of its input: keep its manifest and rejections in OUTPUT.armdata-failed/ and say why."""
    c = manifest["counts"]
    if c["steps_out"] > 0 and reject_fraction(c) <= max_fraction:
        return
    failed = failed_dir(output)
    storage.delete_tree(failed)
    rejected = storage.read_bytes(storage.join(staging, REJECTED_PATH))
    storage.write_bytes(storage.join(failed, "rejected.jsonl"), rejected)
    storage.write_bytes(storage.join(failed, "report.json"), manifest_text(manifest).encode())
    reasons = collections.Counter(
        f"{r['stage']}: {r['reason'][:120]}" for r in map(json.loads, rejected.splitlines()))
    common = "; ".join(f"{n}x {reason}" for reason, n in reasons.most_common(2))
    what = ("no row was written" if c["steps_out"] == 0 else
            f"{reject_fraction(c):.0%} of the input was rejected (--max-reject-fraction "
            f"{max_fraction})")
    raise BuildFailed(f"{what}: {c['episodes_rejected']} of {c['episodes_in']} episodes and "
                      f"{c['steps_rejected']} of {c['steps_in']} steps rejected; nothing was "
                      f"published to {output}. Most common: {common or 'none'}. All rejections: "
                      f"{storage.join(failed, 'rejected.jsonl')}")


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
