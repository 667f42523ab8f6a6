"""The Beam graph of `armdata build`, as a readable list of steps:

    shard slices → read RLDS → standardize → reuse lookup → validate → [depth] → [trace]
      → spill episode rows (+ commit record; finished episodes of a killed run skip the stages)
      → statistics (combine over exactly the written transitions, or --stats)
      → shard by hash(episode_id) → write Parquet shards (+ action columns)
      → manifest, statistics, dataset card, rejected/

Every stage is a plain `armdata.transforms.base.Stage` run by one generic DoFn; rejections of every stage
are collected into `rejected/`, travelling with their episode into its commit record
(`armdata.pipeline.resume`). Only `DataError` becomes a rejection: any other exception (a bug, CUDA out of
memory, a missing package) fails the bundle so that the runner retries it.
"""
from __future__ import annotations

import collections
import dataclasses
import logging
import time
from typing import Any, Iterator

import apache_beam as beam
from apache_beam.pvalue import AsList, AsSingleton, TaggedOutput
from apache_beam.transforms.window import GlobalWindows

from armdata.pipeline.beam_startup import speed_up_beam
from armdata.schemas.config import DatasetConfig
from armdata.pipeline.sources.features import STEPS, config_keys
from armdata.pipeline.sinks.finalize import Finalize
from armdata.pipeline.sources.lerobot import LeRobotPlan, ReadLeRobotEpisode
from armdata.pipeline.resume import REJECTED, REUSED, FinishEpisode, Pending, ReuseLookup, episodes_dir
from armdata.pipeline.sources.rlds import REPORTS, ReadShard, SourcePlan, num_source_steps
from armdata.pipeline.sinks.writer import GroupByShard, WriteShard, auto_num_shards
from armdata.schemas.episode import DataError, Rejection
from armdata.schemas.stats import StatsAccumulator
from armdata.transforms.base import Stage
from armdata.transforms.standardize import standardize_episode

log = logging.getLogger(__name__)


class Standardize(beam.DoFn):
    """Raw RLDS episode → canonical Episode (or a rejection), plus one accounting record."""

    def __init__(self, config: DatasetConfig) -> None:
        self.config = config

    def process(self, raw: dict[str, Any]) -> Iterator[Any]:
        episode_id = f"{self.config.name}/{raw['tfds_id']}"
        total = num_source_steps(raw["steps"])
        try:
            episode = standardize_episode(raw, self.config, episode_id)
        except DataError as exc:  # anything else is a bug: it fails the bundle (and is retried)
            beam.metrics.Metrics.counter("standardize", type(exc).__name__).inc()
            yield TaggedOutput(REJECTED, Rejection(self.config.name, episode_id, None,
                                                   "standardize", str(exc), steps=total))
            episode = None
        dropped = 0 if episode is None else total - len(episode.steps)
        yield TaggedOutput("accounting", {"episodes_in": 1, "steps_source": total,
                                          "steps_dropped_by_config": dropped})
        if episode is not None:
            yield episode


class RunStage(beam.DoFn):
    """Runs one Stage on `Pending` episodes (one rejected by an earlier stage passes through); its
    counters become Beam metrics under the stage's name. A stage with `batch_episodes` > 1 gets
    that many episodes of a bundle at once."""

    def __init__(self, stage: Stage) -> None:
        self.stage = stage

    def setup(self) -> None:
        self.stage.setup()
        self.reported: collections.Counter[str] = collections.Counter()
        self.done = 0
        self.last_log = time.monotonic()

    def start_bundle(self) -> None:
        self.pending: list[Pending] = []

    def process(self, pending: Pending) -> Iterator[Pending]:
        if pending.episode is None:
            yield pending
            return
        self.pending.append(pending)
        if len(self.pending) >= self.stage.batch_episodes:
            yield from self._flush()

    def finish_bundle(self) -> Iterator[Any]:
        for out in self._flush():   # outside `process`, outputs need their window
            yield GlobalWindows.windowed_value(out)

    def _flush(self) -> Iterator[Pending]:
        batch, self.pending = self.pending, []
        if not batch:
            return
        episodes = [p.episode for p in batch]
        if len(episodes) == 1:
            results = [self._one(episodes[0])]
        else:
            counted = collections.Counter(self.stage.counters)
            try:
                results = self.stage.process_batch(episodes)
            except DataError:   # find the bad episode: run them one by one
                log.exception("stage %s failed on a batch; retrying its episodes one by one",
                              self.stage.name)
                self.stage.counters = counted   # the failed attempt's counts are counted again
                results = [self._one(e) for e in episodes]
        for key, n in self.stage.counters.items():
            if n != self.reported[key]:
                beam.metrics.Metrics.counter(self.stage.name, key).inc(n - self.reported[key])
                self.reported[key] = n
        self.done += len(episodes)
        if time.monotonic() - self.last_log > 10:
            log.info("%s: %d episodes done in this worker", self.stage.name, self.done)
            self.last_log = time.monotonic()
        for p, (out, rejections) in zip(batch, results):
            yield Pending(p.episode_id, out, p.rejections + rejections)

    def _one(self, episode: Any) -> tuple[Any, list[Rejection]]:
        try:
            return self.stage.process(episode)
        except DataError as exc:  # bad data in this episode; bugs and OOM fail the bundle
            self.stage.count("episode_error")
            return None, [episode.reject(self.stage.name, str(exc))]


class CombineStats(beam.CombineFn):
    """Exact statistics over all written transitions (`StatsAccumulator` sorts each column
    before reducing, so the result does not depend on the runner's order)."""

    def __init__(self, dataset: str, mask: tuple[bool, ...], config_version: int = 1) -> None:
        self.dataset = dataset
        self.mask = list(mask)
        self.config_version = config_version

    def create_accumulator(self) -> StatsAccumulator:
        return StatsAccumulator()

    def add_input(self, acc: StatsAccumulator, summary: Any) -> StatsAccumulator:
        acc.add(summary.actions, summary.states)
        return acc

    def merge_accumulators(self, accs: Any) -> StatsAccumulator:
        return StatsAccumulator.merge(accs)

    def extract_output(self, acc: StatsAccumulator) -> dict | None:
        return acc.finalize(self.dataset, self.mask, self.config_version) \
            if acc.num_trajectories else None


def sum_dicts(dicts: Any) -> dict[str, int]:
    total: collections.Counter[str] = collections.Counter()
    for d in dicts:
        total.update(d)
    return dict(total)


def config_as_read(config: DatasetConfig, stages: list[Stage]) -> DatasetConfig:
    """The config as reading and standardizing use it: without the depth camera unless a stage
    reads sensor depth (decoding a float depth map per step that nothing uses would cost more
    than the rest of an actions-only build)."""
    if config.depth_key and not any(stage.reads_sensor_depth for stage in stages):
        return dataclasses.replace(config, depth_key=None)
    return config


def build_graph(p: beam.Pipeline, plan: SourcePlan | LeRobotPlan, config: DatasetConfig,
                stages: list[Stage], staging: str, stats: dict | None, num_shards: int | None,
                min_shards: int, manifest_base: dict[str, Any], work: str, work_key: str) -> None:
    speed_up_beam()
    read_config = config_as_read(config, stages)
    frame_keys = [k.removeprefix(STEPS) for k in config_keys(read_config).values()
                  if k.startswith(STEPS)]
    reader = ReadLeRobotEpisode(plan) if isinstance(plan, LeRobotPlan) else \
        ReadShard(plan.directory, frame_keys)
    raw = (p
           | "ShardSlices" >> beam.Create(list(plan.reads))
           | "ReadRLDS" >> beam.ParDo(reader).with_outputs(REPORTS, main="episodes"))
    read = raw.episodes | "Standardize" >> beam.ParDo(Standardize(read_config)).with_outputs(
        REJECTED, "accounting", main="episodes")
    spills = episodes_dir(work)
    lookup = read.episodes | "ReuseLookup" >> beam.ParDo(
        ReuseLookup(spills, work_key)).with_outputs(REJECTED, REUSED, main="pending")
    # No shuffle before the spill: reading, every stage and the spill run fused, one episode at a
    # time, so pixels are never materialized between steps (parallelism comes from the slices).
    pending = lookup.pending
    for stage in stages:
        pending = pending | stage.name.capitalize() >> beam.ParDo(RunStage(stage))
    spilled = pending | "SpillEpisodes" >> beam.ParDo(
        FinishEpisode(spills, work_key)).with_outputs(REJECTED, main="summaries")
    summaries = (spilled.summaries, lookup[REUSED]) | "AllEpisodes" >> beam.Flatten()
    rejected = [read[REJECTED], lookup[REJECTED], spilled[REJECTED]]

    if stats is None:
        stats_pc = summaries | "Statistics" >> beam.CombineGlobally(
            CombineStats(config.name, config.action_mask, config.version))
    else:
        stats_pc = p | "GivenStatistics" >> beam.Create([stats])

    if num_shards is None:
        shards_pc = (summaries
                     | "SizeAndCount" >> beam.Map(lambda s: {"bytes": s.nbytes, "episodes": 1})
                     | "SumSizes" >> beam.CombineGlobally(sum_dicts)
                     | "ShardCount" >> beam.Map(lambda t: auto_num_shards(
                         t.get("bytes", 0), t.get("episodes", 0), min_shards)))
    else:
        shards_pc = p | "GivenShardCount" >> beam.Create([num_shards])
    n_shards = AsSingleton(shards_pc)

    shard_files = (summaries | "ShardEpisodes" >> GroupByShard(n_shards)
                   | "WriteShards" >> beam.ParDo(WriteShard(staging, config.name), n_shards,
                                                 AsSingleton(stats_pc)))
    counts = read.accounting | "CountInputs" >> beam.CombineGlobally(sum_dicts)
    all_rejected = rejected | "AllRejections" >> beam.Flatten()
    _ = (p | "FinalizeTrigger" >> beam.Create([None])
         | "Finalize" >> beam.ParDo(Finalize(staging, manifest_base), AsList(shard_files),
                                    AsSingleton(counts), AsSingleton(stats_pc),
                                    AsList(all_rejected), AsList(raw[REPORTS])))
