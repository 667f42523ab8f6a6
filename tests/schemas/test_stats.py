"""dataset_statistics.json: accumulation, merge, numpy equivalence, loading."""
from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from armdata.schemas.stats import StatsAccumulator, StatsError, dumps_stats, load_stats

MASK = [True] * 6 + [False]


def episodes(n: int = 12, state_dim: int = 5, seed: int = 0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        t = int(rng.integers(1, 30))
        out.append((rng.normal(size=(t, 7)).astype(np.float32),
                    rng.normal(size=(t, state_dim)).astype(np.float32)))
    return out


def accumulate(eps) -> StatsAccumulator:
    acc = StatsAccumulator()
    for a, s in eps:
        acc.add(a, s)
    return acc


def test_finalize_matches_numpy():
    eps = episodes()
    entry = accumulate(eps).finalize("ds", MASK)["ds"]
    for key, index in (("action", 0), ("proprio", 1)):
        values = np.concatenate([e[index] for e in eps])
        got = entry[key]
        np.testing.assert_allclose(got["mean"], values.astype(np.float64).mean(0), rtol=1e-12)
        np.testing.assert_allclose(got["std"], values.astype(np.float64).std(0), rtol=1e-12)
        assert got["min"] == values.min(0).tolist() and got["max"] == values.max(0).tolist()
        assert got["q01"] == np.quantile(values, 0.01, axis=0).tolist()
        assert got["q99"] == np.quantile(values, 0.99, axis=0).tolist()
    assert entry["action"]["mask"] == MASK and "mask" not in entry["proprio"]
    assert entry["num_transitions"] == sum(len(a) for a, _ in eps)
    assert entry["num_trajectories"] == len(eps)


def test_plain_python_types():
    stats = accumulate(episodes(3)).finalize("ds", np.array(MASK))
    entry = stats["ds"]
    assert all(type(v) is float for v in entry["action"]["q01"] + entry["proprio"]["std"])
    assert all(type(v) is bool for v in entry["action"]["mask"])
    assert type(entry["num_transitions"]) is int and type(entry["num_trajectories"]) is int
    json.loads(dumps_stats(stats))


def test_merge_equals_single_pass_in_any_order():
    eps = episodes(20, seed=1)
    whole = accumulate(eps).finalize("ds", MASK)
    parts = [accumulate(eps[i::3]) for i in range(3)]
    merged = StatsAccumulator.merge([parts[2], StatsAccumulator(), parts[0], parts[1]])
    assert merged.finalize("ds", MASK) == whole   # exact: finalize does not depend on order
    nested = StatsAccumulator.merge([StatsAccumulator.merge(parts[:2]), parts[2]])
    assert nested.finalize("ds", MASK) == whole


def test_pickle_round_trip():
    acc = accumulate(episodes(4))
    clone = pickle.loads(pickle.dumps(acc))
    assert clone.finalize("ds", MASK) == acc.finalize("ds", MASK)


def test_no_state_gives_empty_proprio():
    eps = episodes(3, state_dim=0)
    entry = accumulate(eps).finalize("ds", MASK)["ds"]
    assert entry["proprio"] == {k: [] for k in ("mean", "std", "min", "max", "q01", "q99")}
    assert len(entry["action"]["q99"]) == 7


def test_zero_transitions_raises():
    acc = StatsAccumulator()
    acc.add(np.zeros((0, 7)), np.zeros((0, 3)))
    assert acc.num_trajectories == 0
    with pytest.raises(ValueError, match=r"no transitions for dataset 'ds'"):
        acc.finalize("ds", MASK)
    with pytest.raises(ValueError, match="no transitions"):
        StatsAccumulator.merge([StatsAccumulator()]).finalize("ds", MASK)


def test_add_rejects_bad_input():
    acc = StatsAccumulator()
    with pytest.raises(ValueError, match=r"\(T, 7\)"):
        acc.add(np.zeros((3, 6)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"states must have shape \(T=3, S\)"):
        acc.add(np.zeros((3, 7)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="NaN"):
        acc.add(np.full((3, 7), np.nan), np.zeros((3, 2)))
    acc.add(np.zeros((3, 7)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="state has 4 dims, earlier episodes had 2"):
        acc.add(np.zeros((3, 7)), np.zeros((3, 4)))
    other = StatsAccumulator()
    other.add(np.zeros((1, 7)), np.zeros((1, 4)))
    with pytest.raises(ValueError, match="different dims"):
        StatsAccumulator.merge([acc, other])
    with pytest.raises(ValueError, match="7 entries"):
        acc.finalize("ds", MASK[:6])


def test_dumps_is_deterministic_and_sorted():
    a = {"b": {"y": 1, "x": [1.5]}, "a": 2}
    b = {"a": 2, "b": {"x": [1.5], "y": 1}}
    assert dumps_stats(a) == dumps_stats(b)
    text = dumps_stats(a)
    assert text.index('"a"') < text.index('"b"') and text.endswith("}\n")
    assert '\n  "a": 2' in text   # indent 2


def test_load_stats_round_trip(tmp_path):
    stats = accumulate(episodes(3)).finalize("ds", MASK)
    path = tmp_path / "dataset_statistics.json"
    path.write_text(dumps_stats(stats))
    assert load_stats(path, "ds") == stats["ds"]


def test_load_stats_errors(tmp_path):
    path = tmp_path / "dataset_statistics.json"
    with pytest.raises(StatsError, match="does not exist"):
        load_stats(path, "ds")
    path.write_text("{not json")
    with pytest.raises(StatsError, match="not valid JSON"):
        load_stats(path, "ds")
    path.write_text(json.dumps({"other": {}, "bridge": {}}))
    with pytest.raises(StatsError, match=r"dataset 'ds'; present: \['bridge', 'other'\]"):
        load_stats(path, "ds")
    path.write_text(json.dumps({"ds": {"proprio": {}}}))
    with pytest.raises(StatsError, match="no 'action'"):
        load_stats(path, "ds")
    good = {"q01": [0.0] * 7, "q99": [1.0] * 7, "mask": MASK}
    for key in ("q01", "q99", "mask"):
        broken = dict(good)
        broken[key] = good[key][:6]
        path.write_text(json.dumps({"ds": {"action": broken}}))
        with pytest.raises(StatsError, match=rf"action\.{key} must be a list of 7"):
            load_stats(path, "ds")
    missing = {k: v for k, v in good.items() if k != "q99"}
    path.write_text(json.dumps({"ds": {"action": missing}}))
    with pytest.raises(StatsError, match=r"action\.q99 must be a list of 7 values, got None"):
        load_stats(path, "ds")


def test_load_stats_refuses_another_config_version(tmp_path):
    """Statistics of an older conversion (e.g. Bridge's raw actions, version 1) are not applied
    to a newer one; an entry without config_version is version 1."""
    stats = accumulate(episodes(3)).finalize("ds", MASK, config_version=2)
    assert stats["ds"]["config_version"] == 2
    path = tmp_path / "dataset_statistics.json"
    path.write_text(dumps_stats(stats))
    assert load_stats(path, "ds", 2) == stats["ds"]
    with pytest.raises(StatsError, match="config version 2, the config is version 1"):
        load_stats(path, "ds")
    del stats["ds"]["config_version"]
    path.write_text(dumps_stats(stats))
    assert load_stats(path, "ds") == stats["ds"]
    with pytest.raises(StatsError, match="config version 1, the config is version 2"):
        load_stats(path, "ds", 2)
