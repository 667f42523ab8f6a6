"""`armdata build`: check everything that can be checked before any Beam work, run the graph into
a staging directory, publish it to the output only when the job succeeded."""
from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import os
import threading
from typing import Any, Iterator

import tqdm

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.runners.runner import PipelineState

import pipeline
from pipeline import resume, storage
from schemas.config import ConfigError, DatasetConfig, load_config
from pipeline.finalize import manifest_text
from pipeline.graph import build_graph
from pipeline.source import SourceError, plan_source
from schemas.output import SCHEMA_VERSION
from schemas.stats import load_stats
from transforms.base import Stage
from transforms.validate import ValidateStage

log = logging.getLogger(__name__)

# Optional stages in graph order: name → module exposing add_build_arguments / stage_from_args.
STAGE_MODULES = {"depth": "transforms.depth", "trace": "transforms.trace"}


class BuildError(ValueError):
    """A problem with the arguments, found before the job starts."""


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
                   help="TFDS dataset version directory (local or gs://), e.g. .../1.0.0")
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
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty output")
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


def beam_options(beam_args: list[str]) -> PipelineOptions:
    """Beam options from the pass-through arguments; locally: DirectRunner semantics on all cores."""
    args = list(beam_args)
    if not any(a.startswith("--runner") for a in args):
        args.append("--runner=DirectRunner")
    if not any(a.startswith("--direct_running_mode") for a in args):
        args.append("--direct_running_mode=multi_processing")
    if not any(a.startswith("--direct_num_workers") for a in args):
        args.append(f"--direct_num_workers={os.cpu_count() or 1}")
    return PipelineOptions(args)


def make_runner(options: PipelineOptions) -> Any:
    """For DirectRunner, run Beam's portable in-process runner (FnApiRunner) directly, which is
    what DirectRunner picks for batch jobs after first trying to download the Prism binary —
    a download that offline machines cannot make. Any other runner is used as named."""
    runner = options.view_as(StandardOptions).runner
    if runner not in (None, "DirectRunner"):
        return None
    from apache_beam.portability.api import beam_provision_api_pb2
    from apache_beam.runners.portability.fn_api_runner import fn_runner
    from apache_beam.runners.portability.portable_runner import JobServiceHandle

    encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
    return fn_runner.FnApiRunner(provision_info=fn_runner.ExtendedProvisionInfo(
        beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded)))


def prepare(args: argparse.Namespace) -> dict[str, Any]:
    """Every check that needs no Beam work. Raises BuildError/ConfigError/SourceError."""
    config = load_config(args.config)
    names = parse_stages(args.stages)
    if args.max_episodes is not None and args.max_episodes <= 0:
        raise BuildError("--max-episodes must be positive")
    if args.num_shards is not None and args.num_shards <= 0:
        raise BuildError("--num-shards must be positive")
    if storage.is_nonempty_dir(args.output) and not args.overwrite:
        raise BuildError(f"output {args.output} is not empty; pass --overwrite to replace it")
    if storage.is_local(args.output) and os.path.exists(args.output) \
            and not os.path.isdir(args.output):
        raise BuildError(f"output {args.output} exists and is not a directory")
    plan = plan_source(args.source, args.split, args.max_episodes)
    stats = None
    if args.stats:
        try:
            stats = {config.name: load_stats(args.stats, config.name)}
        except (OSError, ValueError) as exc:
            raise BuildError(f"--stats {args.stats}: {exc}") from exc
    stages = make_stages(args, config, names)
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "armdata_version": pipeline.__version__,
        "config": config.to_dict(),
        "config_hash": config.hash(),
        "source": {"directory": plan.directory, "builder_name": plan.builder_name,
                   "version": plan.version, "split": plan.split,
                   "max_episodes": args.max_episodes, "episodes_planned": plan.num_episodes},
        "stages": ["actions", *names],
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
            while not stop.wait(1.0):
                done = resume.count_finished(spill)
                bar.update(done - bar.n)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def run(args: argparse.Namespace, beam_args: list[str] | None = None) -> int:
    ready = prepare(args)
    work, key = resume.prepare_work_dir(args.output, ready["manifest"], not args.no_resume,
                                        args.clean_stale)
    staging = storage.staging_dir(args.output)
    log.info("building %s episodes of %s into %s (staging %s, work %s)",
             ready["plan"].num_episodes, ready["plan"].builder_name, args.output, staging, work)
    try:
        options = beam_options(beam_args or [])
        p = beam.Pipeline(runner=make_runner(options), options=options)
        build_graph(p, ready["plan"], ready["config"], ready["stages"], staging,
                    ready["stats"], args.num_shards, args.min_shards, ready["manifest"],
                    work, key)
        with progress(resume.episodes_dir(work), ready["plan"].num_episodes):
            result = p.run()
            state = result.wait_until_finish()
        if state != PipelineState.DONE:
            raise RuntimeError(f"the Beam job ended in state {state}")
        add_counters(staging, result)
        storage.publish(staging, args.output)
    except BaseException:
        log.error("build failed; nothing was published to %s; finished episodes are kept in %s "
                  "for a rerun of the same command", args.output, work)
        storage.delete_tree(staging)
        raise
    storage.delete_tree(work)
    log.info("published %s", args.output)
    return 0


def stage_counters(result: Any) -> dict[str, int]:
    """The stages' counters (e.g. why traces are null), summed over the graph's steps."""
    totals: dict[str, int] = {}
    for counter in result.metrics().query()["counters"]:
        key = f"{counter.key.metric.namespace}/{counter.key.metric.name}"
        totals[key] = totals.get(key, 0) + int(counter.committed or 0)
    return dict(sorted(totals.items()))


def add_counters(staging: str, result: Any) -> None:
    """Put the job's counters into the finished manifest (written by the job's last step)."""
    path = storage.join(staging, "manifest.json")
    if not storage.exists(path):
        raise RuntimeError("the job finished without writing manifest.json")
    manifest = json.loads(storage.read_bytes(path))
    manifest["counters"] = stage_counters(result)
    manifest["episodes_reused"] = manifest["counters"].get("resume/episodes_reused", 0)
    storage.write_bytes(path, manifest_text(manifest).encode())


ARG_ERRORS = (BuildError, ConfigError, SourceError)
