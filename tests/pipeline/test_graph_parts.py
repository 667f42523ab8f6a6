"""Parts of the build graph run by Beam's TestPipeline on in-memory episodes: the generic stage
DoFn (results, rejections, batches, pass-through), the statistics combine and the shard
assignment, each checked with `assert_that`."""
from __future__ import annotations

import copy

import apache_beam as beam
import numpy as np
from apache_beam.pvalue import AsSingleton
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from armdata.pipeline.graph import CombineStats, RunStage
from armdata.pipeline.resume import Pending
from armdata.pipeline.sinks.writer import EpisodeSummary, GroupByShard, shard_of
from armdata.schemas.episode import DataError, Episode, Step
from armdata.transforms.base import Stage


def episode(name: str, steps: int) -> Episode:
    rng = np.random.default_rng(len(name) + steps)
    return Episode("toy", f"toy/{name}", steps, [
        Step(i, b"", rng.normal(size=7).astype(np.float32), np.zeros(2, np.float32), "go")
        for i in range(steps)])


class DropOddSteps(Stage):
    """Drops odd source steps; an episode named 'bad' is bad data as a whole."""
    name = "drop_odd"

    def __init__(self, batch: int = 1) -> None:
        super().__init__()
        self.batch_episodes = batch

    def process(self, ep: Episode) -> tuple[Episode | None, list]:
        if ep.episode_id.endswith("bad"):
            raise DataError("bad episode")
        self.count("episodes")
        ep = copy.copy(ep)   # a batch retried one by one after a DataError sees the input again
        rejections = ep.drop_steps({i: "odd" for i, s in enumerate(ep.steps) if s.index % 2},
                                   self.name)
        return (ep if ep.steps else None), rejections


def outcome(p: Pending) -> tuple:
    steps = None if p.episode is None else [s.index for s in p.episode.steps]
    return p.episode_id, steps, sorted((r.step, r.reason) for r in p.rejections)


def test_run_stage_keeps_results_rejections_and_passes_rejected_through():
    inputs = [Pending("toy/a", episode("a", 4)), Pending("toy/b", episode("b", 1)),
              Pending("toy/bad", episode("bad", 2)), Pending("toy/gone", None, [])]
    expected = [("toy/a", [0, 2], [(1, "odd"), (3, "odd")]), ("toy/b", [0], []),
                ("toy/bad", None, [(None, "bad episode")]), ("toy/gone", None, [])]
    for batch in (1, 3):   # one by one, and batches that fall back to one by one on bad data
        with test_pipeline.TestPipeline() as p:
            out = (p | beam.Create(inputs, reshuffle=False)
                   | beam.ParDo(RunStage(DropOddSteps(batch))) | beam.Map(outcome))
            assert_that(out, equal_to(expected))


def test_a_batch_retried_one_by_one_counts_each_episode_once():
    """A batch that fails on bad data is rerun episode by episode; what the failed attempt
    counted is not counted twice."""
    stage = DropOddSteps(batch=3)
    fn = RunStage(stage)
    fn.setup()
    fn.start_bundle()
    inputs = [Pending("toy/a", episode("a", 4)), Pending("toy/b", episode("b", 1)),
              Pending("toy/bad", episode("bad", 2))]
    out = [o for p in inputs for o in fn.process(p)] + [o.value for o in fn.finish_bundle()]
    assert [o.episode_id for o in out] == ["toy/a", "toy/b", "toy/bad"]
    assert stage.counters == {"episodes": 2, "episode_error": 1}


def summary(ep: Episode) -> EpisodeSummary:
    return EpisodeSummary(ep.episode_id, "", len(ep.steps), 0, ep.actions(), ep.states())


def test_statistics_combine_is_exact_over_every_transition():
    episodes = [episode(name, n) for name, n in (("a", 5), ("b", 3), ("c", 8))]
    actions = np.concatenate([e.actions() for e in episodes]).astype(np.float64)
    mask = (True,) * 6 + (False,)
    with test_pipeline.TestPipeline() as p:
        stats = (p | beam.Create([summary(e) for e in episodes])
                 | beam.CombineGlobally(CombineStats("toy", mask, 3)))

        def check(result):
            (got,) = result
            action = got["toy"]["action"]
            assert got["toy"]["num_transitions"] == 16 and got["toy"]["num_trajectories"] == 3
            assert got["toy"]["config_version"] == 3 and action["mask"] == list(mask)
            assert np.allclose(action["mean"], actions.mean(0))
            assert np.allclose(action["q99"], np.quantile(actions.astype(np.float32), 0.99, 0))
            assert action["min"] == actions.min(0).astype(np.float32).tolist()

        assert_that(stats, check)


def test_every_shard_index_gets_its_episodes_and_empty_ones_too():
    ids = [f"toy/{i}" for i in range(12)]
    shards = 16   # more shards than episodes: some indices get no episode
    expected = [(i, sorted(e for e in ids if shard_of(e, shards) == i)) for i in range(shards)]
    assert any(not got for _, got in expected)
    with test_pipeline.TestPipeline() as p:
        n = AsSingleton(p | "N" >> beam.Create([shards]))
        grouped = (p | beam.Create([summary(episode(e.split("/")[1], 1)) for e in ids])
                   | GroupByShard(n)
                   | beam.MapTuple(lambda i, items: (i, sorted(s.episode_id for s in items
                                                               if s is not None))))
        assert_that(grouped, equal_to(expected))


def test_ipython_probe_imports_nothing_outside_ipython(monkeypatch):
    """Beam's probe for an IPython session (run for every transform applied) imported IPython
    where it is installed, 0.3 s of a build's start-up; it still finds a real session."""
    import sys
    import types

    from apache_beam import pipeline
    from apache_beam.utils import interactive_utils

    from armdata.pipeline.beam_startup import skip_ipython_probe

    skip_ipython_probe()
    skip_ipython_probe()   # idempotent
    monkeypatch.delitem(sys.modules, "IPython", raising=False)
    assert not interactive_utils.is_in_ipython() and not pipeline.is_in_ipython()
    assert "IPython" not in sys.modules
    session = types.ModuleType("IPython")
    session.get_ipython = lambda: object()    # what IPython returns inside a session
    monkeypatch.setitem(sys.modules, "IPython", session)
    assert interactive_utils.is_in_ipython() and pipeline.is_in_ipython()


def test_dofn_specs_are_inspected_once_per_dofn_with_beams_answers(monkeypatch):
    """Beam inspects every method of the same DoFn three to four times while building and
    translating a graph; the memo answers as Beam does (state and timer specs found, duplicate
    parameters refused) and inspects each object once."""
    import apache_beam as beam
    from apache_beam.coders import VarIntCoder
    from apache_beam.transforms import userstate

    from armdata.pipeline import beam_startup

    monkeypatch.setattr(userstate, "get_dofn_specs", userstate.get_dofn_specs)  # undone after
    inspect = userstate.get_dofn_specs
    calls = []

    def counted(dofn):
        calls.append(dofn)
        return inspect(dofn)

    monkeypatch.setattr(userstate, "get_dofn_specs", counted)
    beam_startup.memoize_dofn_specs()
    beam_startup.memoize_dofn_specs()   # idempotent

    state = userstate.BagStateSpec("seen", VarIntCoder())

    class Stateful(beam.DoFn):
        def process(self, element, seen=beam.DoFn.StateParam(state)):
            yield element

    class Plain(beam.DoFn):
        def process(self, element):
            yield element

    stateful, plain = Stateful(), Plain()
    for _ in range(3):
        assert userstate.get_dofn_specs(stateful) == ({state}, set())
        assert userstate.is_stateful_dofn(stateful) and not userstate.is_stateful_dofn(plain)
    assert calls == [stateful, plain]
    specs = userstate.get_dofn_specs(stateful)
    specs[0].clear()                       # a caller changing its answer changes no later one
    assert userstate.get_dofn_specs(stateful) == ({state}, set())
    assert userstate.get_dofn_specs(Stateful()) == ({state}, set()) and len(calls) == 3
