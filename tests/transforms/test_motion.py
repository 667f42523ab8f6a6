"""Language motions (SPEC §7): every word and rule on constructed state sequences, config
validation, and the real Bridge sample built with `--reasoning-parts motion` checked against a
loop-by-loop implementation of the ECoT rule over the full source episodes."""
from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow_datasets as tfds

from armdata.schemas.config import ConfigError, MotionConfig, parse_motion
from armdata.transforms.motion import episode_motions, motion_label, motion_runs, motion_states, \
    states_from_actions, ternarize
from tests.conftest import build, read_rows

CFG = MotionConfig()


def label(delta: list[float]) -> str:
    d = np.zeros(7)
    d[:len(delta)] = delta
    return motion_label(ternarize(d, CFG), CFG)


@pytest.mark.parametrize("delta, expected", [
    ([0.10, 0.04, 0], "move forward"),                  # SPEC example: rescaled, y drops out
    ([0.06, 0.06, 0], "move forward left"),
    ([0, 0, 0, 0, 0, 0.5], "rotate counterclockwise"),
    ([0, 0, 0, 0, 0, -0.5], "rotate clockwise"),
    ([-0.05, 0, 0], "move backward"),
    ([0, -0.05, 0], "move right"),
    ([0, 0, 0.05], "move up"),
    ([0, 0, -0.05], "move down"),
    ([0, -0.04, 0.04], "move right up"),
    ([0.05, -0.05, 0.05], "stop"),          # rescaled to 0.03 each: never beyond the threshold
    ([0, 0, 0, 0.5, 0, 0], "tilt up"),
    ([0, 0, 0, -0.5, 0.9, 0], "tilt down"),              # roll's sign wins over pitch
    ([0, 0, 0, 0, -0.5, 0], "tilt down"),               # pitch when roll is 0
    ([0, 0, 0, 0.2, 0, 0], "stop"),                     # 0.2 / 10 = 0.02 ≤ 0.03
    ([0, 0, 0, 0, 0, 0, 0.8], "open gripper"),
    ([0, 0, 0, 0, 0, 0, -0.8], "close gripper"),        # gripper is not scaled
    ([0.03, 0, 0], "stop"),                             # threshold is strict
    ([0.0301, 0, 0], "move forward"),
    ([0.2, 0, 0, 0.5, 0, -0.5, -1], "move forward, tilt up, rotate clockwise, close gripper"),
    ([0, 0, 0], "stop"),
])
def test_words_and_order(delta, expected):
    assert label(delta) == expected


def test_rescale_keeps_direction_and_l1():
    # (0.3, 0.1, 0): L1 0.4 → ×0.225 → (0.0675, 0.0225): only forward survives the threshold
    assert label([0.3, 0.1, 0]) == "move forward"
    # below the norm nothing is rescaled: 0.04 stays 0.04
    assert label([0.04, 0.04, 0]) == "move forward left"


def test_window_by_source_index_and_last_step():
    # x moves 0.02 per source step; window 3 → 0.06 over the window, "move forward"
    T = 8
    states = np.zeros((T, 7))
    states[:, 0] = 0.02 * np.arange(T)
    labels = episode_motions(states, list(range(T)), T, CFG)
    assert labels[:5] == ["move forward"] * 5
    # step 5: S[7] - S[5] = 0.04 → forward; step 6: 0.02 → stop; last copies step 6
    assert labels[5:] == ["move forward", "stop", "stop"]
    # drop source step 0 (as Bridge does): windows stay by source index
    assert episode_motions(states[1:], list(range(1, T)), T, CFG) == labels[1:]
    # a dropped window end: the last kept step before it stands in
    kept = [0, 1, 2, 4, 5, 6, 7]
    got = episode_motions(states[kept], kept, T, CFG)
    assert got[0] == "move forward"          # S[2] - S[0] = 0.04 (step 3 missing)


def test_single_step_and_bad_states():
    assert episode_motions(np.zeros((1, 7)), [0], 1, CFG) == ["stop"]
    with pytest.raises(ValueError, match="NaN"):
        episode_motions(np.full((2, 7), np.nan), [0, 1], 2, CFG)
    with pytest.raises(ValueError, match="states"):
        episode_motions(np.zeros((2, 6)), [0, 1], 2, CFG)


def test_states_from_actions():
    actions = np.zeros((5, 7))
    actions[:, 2] = 0.02      # up 2 cm per step
    actions[:, 6] = [1, 1, 0, 0, 0]
    s = states_from_actions(actions)
    np.testing.assert_allclose(s[:, 2], [0, 0.02, 0.04, 0.06, 0.08])
    np.testing.assert_allclose(s[:, 6], [1, 1, 0, 0, 0])
    labels = episode_motions(s, list(range(5)), 5, CFG)
    assert labels[0] == "move up, close gripper"
    assert motion_states(np.zeros((5, 0)), CFG) is None       # no state → from actions
    assert motion_states(np.zeros((5, 7)), CFG).shape == (5, 7)


def test_motion_runs():
    assert motion_runs(["a", "a", "b", "a"], [1, 2, 3, 5]) == [(1, 2, "a"), (3, 3, "b"),
                                                                (5, 5, "a")]


def test_config_motion_validation():
    cfg = parse_motion({"threshold": 0.01, "state_indices": [0, 1, 2, 6, 5, 4, 7],
                        "words": {"x": ["ahead", "back"]}}, "m")
    assert cfg.threshold == 0.01 and cfg.word("x", 1) == "ahead" and cfg.word("y", -1) == "right"
    for bad, msg in [({"threshold": -1}, "threshold"), ({"window": 0}, "window"),
                     ({"state_indices": [0, 1]}, "state_indices"), ({"speed": 1}, "unknown"),
                     ({"words": {"x": ["a"]}}, "words.x"), ({"words": {"w": ["a", "b"]}}, "words")]:
        with pytest.raises(ConfigError, match=msg):
            parse_motion(bad, "m")


# --- Bridge, end to end ---------------------------------------------------------------------------

def ecot_label(S: np.ndarray, t: int) -> str:
    """SPEC §7 written out step by step (independent of armdata.transforms.motion)."""
    T = len(S)
    d = [float(S[min(t + 3, T - 1)][k]) - float(S[t][k]) for k in range(7)]
    l1 = abs(d[0]) + abs(d[1]) + abs(d[2])
    if l1 > 0.09:
        d[0], d[1], d[2] = d[0] * 0.09 / l1, d[1] * 0.09 / l1, d[2] * 0.09 / l1
    d[3], d[4], d[5] = d[3] / 10, d[4] / 10, d[5] / 10
    s = [1 if v > 0.03 else -1 if v < -0.03 else 0 for v in d]
    words = []
    if s[0] == 1:
        words.append("forward")
    elif s[0] == -1:
        words.append("backward")
    if s[1] == 1:
        words.append("left")
    elif s[1] == -1:
        words.append("right")
    if s[2] == 1:
        words.append("up")
    elif s[2] == -1:
        words.append("down")
    parts = ["move " + " ".join(words)] if words else []
    tilt = s[3] if s[3] != 0 else s[4]
    if tilt == 1:
        parts.append("tilt up")
    elif tilt == -1:
        parts.append("tilt down")
    if s[5] == 1:
        parts.append("rotate counterclockwise")
    elif s[5] == -1:
        parts.append("rotate clockwise")
    if s[6] == 1:
        parts.append("open gripper")
    elif s[6] == -1:
        parts.append("close gripper")
    return ", ".join(parts) if parts else "stop"


def ecot_episode(S: np.ndarray) -> list[str]:
    labels = [ecot_label(S, t) for t in range(len(S))]
    labels[-1] = labels[-2]
    return labels


def test_bridge_motion_matches_spec(bridge_dir, tmp_path):
    out = tmp_path / "out"
    assert build("--config", "bridge_dataset", "--source", bridge_dir, "--output", out,
                 "--stages", "actions,reasoning", "--reasoning-parts", "motion") == 0
    builder = tfds.builder_from_directory(str(bridge_dir))
    ds = builder.as_dataset(split="train", read_config=tfds.ReadConfig(add_tfds_id=True))
    expected = {}
    for ep in tfds.as_numpy(ds):
        S = np.stack([s["observation"]["state"] for s in ep["steps"]])
        for t, lab in enumerate(ecot_episode(S)):
            expected["bridge_dataset/" + ep["tfds_id"].decode(), t] = lab
    rows = read_rows(out)
    assert rows and all(r["motion"] is not None for r in rows)
    for r in rows:
        assert r["motion"] == expected[r["episode_id"], r["step"]], (r["episode_id"], r["step"])
        assert r["reasoning"] == f"TASK: {r['instruction'].strip()} MOVE: {r['motion']}"
        assert r["scene_caption"] is None and r["plan"] is None and r["objects"] is None
    assert len({r["motion"] for r in rows}) > 3       # the sample really moves
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counters"]["reasoning/motion_from_state"] == 25
    assert manifest["stage_options"]["reasoning"]["parts"] == ["motion"]


def test_dataset_config_carries_motion():
    from armdata.schemas.config import parse_config

    base = {"name": "x", "standardize": "identity", "image_key": "observation/image",
            "require_instruction": False}
    assert parse_config(base).motion == MotionConfig()
    cfg = parse_config({**base, "motion": {"window": 5, "words": {"z": ["raise", "lower"]}}})
    assert cfg.motion.window == 5 and cfg.motion.word("z", -1) == "lower"
    assert json.loads(json.dumps(cfg.to_dict()))["motion"]["window"] == 5
    with pytest.raises(ConfigError, match="<config>: motion.threshold"):
        parse_config({**base, "motion": {"threshold": "big"}})
    with pytest.raises(ConfigError, match="motion must be a mapping"):
        parse_config({**base, "motion": [1]})
