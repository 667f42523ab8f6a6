"""Per-dataset standardization: gripper conventions, dataset functions, whole episodes."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from armdata.schemas.config import parse_config
from armdata.schemas.episode import decode_rgb, encode_jpeg
from armdata.transforms.standardize import (FUNCTIONS, StandardizeError, gripper_binarize,
                                    gripper_closed_is_one, gripper_minus_one_open,
                                    gripper_relative_to_absolute, jsonable, standardize_episode,
                                    step_field)

SHARED = Path(__file__).resolve().parents[3] / "shared"
BRIDGE_DEBUG = SHARED / "data" / "bridge_debug" / "bridge_dataset" / "1.0.0"


# --- gripper conventions -------------------------------------------------------------------

def test_relative_gripper_never_set_is_open():
    assert gripper_relative_to_absolute(np.array([0.0, 0.05, -0.09, 0.09])).tolist() == [1] * 4


def test_relative_gripper_holds_last_command():
    g = np.array([0.0, 1.0, 0.0, 0.05, -1.0, -0.05, 0.1, 0.0, -0.1, 0.11, -0.11])
    # before close, close, hold, hold, open, hold, ±0.1 exactly is no command, close, open
    expected = [1, 0, 0, 0, 1, 1, 1, 1, 1, 0, 1]
    out = gripper_relative_to_absolute(g)
    assert out.dtype == np.float32 and out.tolist() == expected


def test_relative_gripper_before_first_command_is_its_opposite():
    # Octo/OpenVLA rel2abs: the first command is assumed not redundant, so an opening command
    # means the gripper was closed before it (and open before a first closing command).
    assert gripper_relative_to_absolute(np.array([0.0, 0.0, -1.0, 0.0])).tolist() == [0, 0, 1, 1]
    assert gripper_relative_to_absolute(np.array([0.0, 0.0, 1.0, 0.0])).tolist() == [1, 1, 0, 0]
    assert gripper_relative_to_absolute(np.array([0.1, -0.1, -0.5])).tolist() == [0, 0, 1]


def test_relative_gripper_mock_episode_first_command_open_after_two_idle_steps():
    """The issue's case: RT-1 closedness commands, first command 'open' after two idle steps."""
    g = np.zeros(36, np.float32)
    g[2], g[15], g[30] = -1.0, 1.0, -1.0
    out = gripper_relative_to_absolute(g)
    expected = np.array([0.0] * 2 + [1.0] * 13 + [0.0] * 15 + [1.0] * 6)   # rule written out
    np.testing.assert_array_equal(out, expected)
    old_rule = np.array([1.0] * 15 + [0.0] * 15 + [1.0] * 6)   # "open before any command"
    assert np.mean(out == old_rule) == pytest.approx(34 / 36)    # 0.944: the two idle steps


def test_binarize_settled_values_and_next_settled():
    g = np.array([1.0, 0.5, 0.02, 0.3, 0.99, 0.95, 0.05, 0.0])
    # 0.95 and 0.05 are not settled (strict thresholds): they take the next settled value
    assert gripper_binarize(g).tolist() == [1, 0, 0, 1, 1, 0, 0, 0]


def test_binarize_trailing_in_between_carries_last_raw_value_back():
    # Octo's scan starts from the last raw value: a trailing in-between run takes that value
    out = gripper_binarize(np.array([1.0, 0.7, 0.5]))
    assert out.dtype == np.float32 and out.tolist() == [1.0, 0.5, 0.5]
    assert gripper_binarize(np.array([1.0, 0.3, 0.4, 0.0, 0.6, 0.8])).tolist() == \
        pytest.approx([1.0, 0.0, 0.0, 0.0, 0.8, 0.8])
    assert gripper_binarize(np.zeros(0)).shape == (0,)


def test_minus_one_open_is_one_minus_clip():
    out = gripper_minus_one_open(np.array([-1.0, -0.5, 0.0, 0.25, 1.0, 2.0]))
    np.testing.assert_allclose(out, [1, 1, 1, 0.75, 0, 0])


def test_closed_is_one_inverts():
    np.testing.assert_allclose(gripper_closed_is_one(np.array([0.0, 1.0, 0.25])), [1, 0, 0.75])


# --- field access ------------------------------------------------------------------------

def test_step_field_errors_name_key_and_shapes():
    steps = {"action": np.zeros((4, 6), np.float32), "text": np.array([b"a"] * 4, object)}
    with pytest.raises(StandardizeError, match=r"'action'.*\(T, 7\).*\(4, 6\)"):
        step_field(steps, "action", 7)
    with pytest.raises(StandardizeError, match=r"missing step key 'nope'.*\['action', 'text'\]"):
        step_field(steps, "nope")
    with pytest.raises(StandardizeError, match=r"'text'.*numbers"):
        step_field(steps, "text")
    with pytest.raises(StandardizeError, match=r">=8"):
        step_field(steps, "action", min_width=8)


def test_step_field_flattens_and_widens():
    steps = {"a": np.arange(4.0), "b": np.zeros((4, 10, 3))}
    assert step_field(steps, "a", 1).shape == (4, 1)
    assert step_field(steps, "b", 30).shape == (4, 30)
    assert step_field(steps, "a").dtype == np.float32


# --- dataset functions -------------------------------------------------------------------

def rng_actions(t: int, d: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(t, d)).astype(np.float32)


def test_identity():
    a = rng_actions(5, 7)
    actions, keep = FUNCTIONS["identity"]({"action": a}, {})
    np.testing.assert_array_equal(actions, a)
    assert keep.dtype == np.int64 and keep.tolist() == [0, 1, 2, 3, 4]


def test_fractal():
    wv, rd = rng_actions(4, 3, 1), rng_actions(4, 3, 2)
    steps = {"action/world_vector": wv, "action/rotation_delta": rd,
             "action/gripper_closedness_action": np.array([[0.0], [1.0], [0.0], [-1.0]]),
             "action/terminate_episode": np.zeros((4, 3), np.int32)}
    actions, keep = FUNCTIONS["fractal20220817_data"](steps, {})
    np.testing.assert_array_equal(actions[:, :3], wv)
    np.testing.assert_array_equal(actions[:, 3:6], rd)
    assert actions[:, 6].tolist() == [1, 0, 0, 1] and keep.tolist() == [0, 1, 2, 3]


def test_fractal_uses_action_key_prefix():
    steps = {"act/world_vector": np.zeros((2, 3)), "act/rotation_delta": np.zeros((2, 3)),
             "act/gripper_closedness_action": np.zeros((2, 1))}
    assert FUNCTIONS["fractal20220817_data"](steps, {}, "act")[0].shape == (2, 7)
    with pytest.raises(StandardizeError, match="action/world_vector"):
        FUNCTIONS["fractal20220817_data"](steps, {})


def test_bridge_dataset_raw_option_drops_first_and_binarizes():
    raw = rng_actions(5, 7)
    raw[0, :6] = 0
    raw[:, 6] = [1.0, 0.6, 0.01, 0.5, 1.0]
    actions, keep = FUNCTIONS["bridge_dataset"]({"action": raw}, {"recompute_from_state": False})
    assert keep.tolist() == [1, 2, 3, 4]
    np.testing.assert_array_equal(actions[:, :6], raw[1:, :6])
    assert actions[:, 6].tolist() == [0, 0, 1, 1]


def test_bridge_dataset_default_relabels_from_consecutive_states():
    raw = rng_actions(6, 7)
    raw[:, 6] = [1.0, 1.0, 0.5, 0.0, 0.0, 0.7]   # ends in between: carried back, not rounded
    state = rng_actions(6, 7, 3)
    actions, keep = FUNCTIONS["bridge_dataset"]({"action": raw, "observation/state": state}, {})
    # OpenVLA bridge_orig: drop the all-zero first step, binarize, relabel, drop the last step
    assert keep.tolist() == [1, 2, 3, 4]
    for row, i in zip(actions, keep):
        np.testing.assert_allclose(row[:6], state[i + 1, :6] - state[i, :6], rtol=1e-6)
    assert actions[:, 6].tolist() == pytest.approx([1.0, 0.0, 0.0, 0.0])


def test_bridge_dataset_relabel_on_real_sample_differs_from_raw():
    """On the real Bridge sample the published relabelling is what the build yields by default;
    the raw action[:6] differs from it by about 0.114 at most."""
    if not BRIDGE_DEBUG.exists():
        pytest.skip("shared Bridge sample not present")
    tfds = pytest.importorskip("tensorflow_datasets")
    ds = tfds.builder_from_directory(str(BRIDGE_DEBUG)).as_dataset(
        split="train", decoders={"steps": tfds.decode.SkipDecoding()})
    worst = 0.0
    for record in ds:
        steps = _flatten(record["steps"])
        actions, keep = FUNCTIONS["bridge_dataset"](steps, {})
        state, raw = steps["observation/state"], steps["action"]
        T = len(raw)
        assert keep.tolist() == list(range(1, T - 1))
        np.testing.assert_allclose(actions[:, :6], state[2:T, :6] - state[1:T - 1, :6],
                                   atol=1e-6)
        worst = max(worst, float(np.abs(actions[:, :6] - raw[1:T - 1, :6]).max()))
    assert 0.10 < worst < 0.12


def test_bridge_openx():
    wv, rd = rng_actions(3, 3), rng_actions(3, 3, 1)
    steps = {"action/world_vector": wv, "action/rotation_delta": rd,
             "action/open_gripper": np.array([True, False, True])}
    actions, keep = FUNCTIONS["bridge"](steps, {})
    np.testing.assert_array_equal(actions[:, :6], np.concatenate([wv, rd], 1))
    assert actions[:, 6].tolist() == [1, 0, 1] and keep.tolist() == [0, 1, 2]


def test_bc_z_first_future_step():
    xyz, aa = rng_actions(3, 30), rng_actions(3, 30, 1)
    close = np.zeros((3, 10), np.float32)
    close[1, 0] = 1.0
    close[2, 1:] = 1.0          # later futures must not matter
    steps = {"action/future/xyz_residual": xyz, "action/future/axis_angle_residual": aa,
             "action/future/target_close": close}
    actions, keep = FUNCTIONS["bc_z"](steps, {})
    np.testing.assert_array_equal(actions[:, :3], xyz[:, :3])
    np.testing.assert_array_equal(actions[:, 3:6], aa[:, :3])
    assert actions[:, 6].tolist() == [1, 0, 1] and keep.tolist() == [0, 1, 2]


def test_libero():
    raw = rng_actions(3, 7)
    raw[:, 6] = [-1.0, 1.0, 0.5]
    actions, keep = FUNCTIONS["libero"]({"action": raw}, {})
    np.testing.assert_array_equal(actions[:, :6], raw[:, :6])
    np.testing.assert_allclose(actions[:, 6], [1, 0, 0.5])


def test_generic_concatenates_and_converts():
    pos, rot = rng_actions(4, 3), rng_actions(4, 3, 1)
    grip = np.array([0.0, 1.0, 1.0, 0.0], np.float32)
    steps = {"a/pos": pos, "a/rot": rot, "a/grip": grip}
    opts = {"action_keys": ["a/pos", "a/rot", "a/grip"], "gripper": "closed_is_one",
            "drop_first": True}
    actions, keep = FUNCTIONS["generic"](steps, opts)
    assert keep.tolist() == [1, 2, 3]
    np.testing.assert_array_equal(actions[:, :6], np.concatenate([pos, rot], 1)[1:])
    assert actions[:, 6].tolist() == [0, 0, 1]


@pytest.mark.parametrize("mode,g,expected", [
    ("open_is_one", [1.0, 0.0], [1, 0]),
    ("closed_is_one", [1.0, 0.0], [0, 1]),
    ("minus_one_open", [-1.0, 1.0], [1, 0]),
    ("relative_minus_one_open", [0.0, 1.0], [1, 0]),
])
def test_generic_gripper_modes_on_action_key(mode, g, expected):
    raw = np.zeros((2, 7), np.float32)
    raw[:, 6] = g
    actions, _ = FUNCTIONS["generic"]({"action": raw}, {"gripper": mode})
    assert actions[:, 6].tolist() == expected


def test_generic_wrong_width():
    with pytest.raises(StandardizeError, match=r"give 6 dims.*expected 7"):
        FUNCTIONS["generic"]({"action": np.zeros((2, 6))}, {"gripper": "open_is_one"})


def test_check_options_messages():
    with pytest.raises(ValueError, match=r"does not take option\(s\) \['bogus'\].*none"):
        FUNCTIONS["libero"].check_options({"bogus": 1})
    with pytest.raises(ValueError, match=r"recompute_from_state must be true or false"):
        FUNCTIONS["bridge_dataset"].check_options({"recompute_from_state": "yes"})
    with pytest.raises(ValueError, match=r"needs option 'gripper'"):
        FUNCTIONS["generic"].check_options({})
    with pytest.raises(ValueError, match=r"gripper must be one of"):
        FUNCTIONS["generic"].check_options({"gripper": "open"})
    with pytest.raises(ValueError, match=r"action_keys must be a non-empty list"):
        FUNCTIONS["generic"].check_options({"gripper": "open_is_one", "action_keys": "action"})
    assert FUNCTIONS["generic"].check_options({"gripper": "open_is_one"}) == {
        "action_keys": None, "gripper": "open_is_one", "drop_first": False, "layout": None,
        "quaternion_at": None}


# --- whole episodes ----------------------------------------------------------------------

def jpeg(color: tuple[int, int, int], size: tuple[int, int] = (8, 6)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def halves_jpeg() -> bytes:
    """Top half red, bottom half blue (16x16)."""
    pixels = np.zeros((16, 16, 3), np.uint8)
    pixels[:8, :, 0] = 255
    pixels[8:, :, 2] = 255
    return encode_jpeg(pixels)


def make_config(**overrides):
    raw = {"name": "test_ds", "standardize": "identity", "image_key": "observation/image",
           "instruction_key": "language_instruction", "state_key": "observation/state"}
    raw.update(overrides)
    return parse_config({k: v for k, v in raw.items() if v is not None})


def make_raw(t: int = 4) -> dict:
    steps = {
        "observation/image": np.array([jpeg((10 * i, 0, 0)) for i in range(t)], object),
        "observation/wrist_image": np.array([jpeg((0, 10 * i, 0)) for i in range(t)], object),
        "observation/state": rng_actions(t, 5, 7),
        "language_instruction": np.array(["pick up the cup".encode()] * t, object),
        "action": rng_actions(t, 7, 8),
        "is_first": np.arange(t) == 0,
        "is_last": np.arange(t) == t - 1,
        "is_terminal": np.arange(t) == t - 1,
    }
    meta = {"episode_metadata/file_path": np.bytes_(b"/data/ep.npy"),
            "episode_metadata/episode_id": np.int32(5),
            "episode_metadata/extrinsics": np.eye(4, dtype=np.float32),
            "has_language": np.bool_(True)}
    return {"steps": steps, "episode_metadata": meta}


def test_episode_fields():
    raw = make_raw()
    ep = standardize_episode(raw, make_config(wrist_image_key="observation/wrist_image"), "e1")
    assert (ep.dataset, ep.episode_id, ep.num_steps, len(ep.steps)) == ("test_ds", "e1", 4, 4)
    for i, step in enumerate(ep.steps):
        assert step.index == i
        assert step.image == raw["steps"]["observation/image"][i]
        assert step.wrist_image == raw["steps"]["observation/wrist_image"][i]
        assert step.instruction == "pick up the cup"
        np.testing.assert_array_equal(step.action, raw["steps"]["action"][i])
        np.testing.assert_array_equal(step.state, raw["steps"]["observation/state"][i])
        assert step.state.dtype == np.float32 and step.sensor_depth is None
        assert (step.is_first, step.is_last, step.is_terminal) == (i == 0, i == 3, i == 3)
    assert ep.metadata == {"file_path": "/data/ep.npy", "episode_id": 5,
                           "extrinsics": np.eye(4).tolist(), "has_language": True}
    json.dumps(ep.metadata)


def test_episode_kept_steps_keep_source_index_and_flags():
    raw = make_raw(5)
    raw["steps"]["action"][:, 6] = 1.0
    ep = standardize_episode(raw, make_config(standardize="bridge_dataset",
                                                 options={"recompute_from_state": False}), "e")
    assert [s.index for s in ep.steps] == [1, 2, 3, 4] and ep.num_steps == 5
    assert [s.is_first for s in ep.steps] == [False] * 4
    assert ep.steps[0].image == raw["steps"]["observation/image"][1]
    np.testing.assert_array_equal(ep.steps[0].state, raw["steps"]["observation/state"][1])


def test_episode_flags_default_to_positions():
    raw = make_raw(3)
    for name in ("is_first", "is_last", "is_terminal"):
        del raw["steps"][name]
    ep = standardize_episode(raw, make_config(), "e")
    assert [(s.is_first, s.is_last, s.is_terminal) for s in ep.steps] == [
        (True, False, False), (False, False, False), (False, True, False)]


def test_episode_without_state_or_instruction():
    raw = make_raw(2)
    ep = standardize_episode(raw, make_config(state_key=None, instruction_key=None,
                                              require_instruction=False), "e")
    assert ep.steps[0].state.shape == (0,) and ep.steps[0].instruction == ""
    assert ep.states().shape == (2, 0)


def test_episode_rotate_180_turns_images_and_wrist_upright():
    raw = make_raw(2)
    raw["steps"]["observation/image"] = np.array([halves_jpeg()] * 2, object)
    raw["steps"]["observation/wrist_image"] = np.array([halves_jpeg()] * 2, object)
    ep = standardize_episode(raw, make_config(rotate_180=True,
                                              wrist_image_key="observation/wrist_image"), "e")
    for data in (ep.steps[0].image, ep.steps[1].wrist_image):
        pixels = decode_rgb(data).astype(int)
        assert pixels[2, 8, 2] > 200 and pixels[2, 8, 0] < 60     # top is blue now
        assert pixels[13, 8, 0] > 200 and pixels[13, 8, 2] < 60   # bottom is red
        assert data[:2] == b"\xff\xd8"                            # JPEG


def test_episode_pixel_arrays_become_png():
    raw = make_raw(2)
    pixels = np.random.default_rng(0).integers(0, 255, (2, 6, 8, 3), dtype=np.uint8)
    raw["steps"]["observation/image"] = pixels
    ep = standardize_episode(raw, make_config(), "e")
    np.testing.assert_array_equal(decode_rgb(ep.steps[1].image), pixels[1])


def test_episode_sensor_depth_numeric_and_png():
    raw = make_raw(2)
    depth = np.random.default_rng(0).integers(0, 5000, (2, 6, 8, 1)).astype(np.uint16)
    raw["steps"]["observation/depth"] = depth
    ep = standardize_episode(raw, make_config(depth_key="observation/depth",
                                              depth_scale=0.001), "e")
    assert ep.steps[1].sensor_depth.shape == (6, 8) and ep.steps[1].sensor_depth.dtype == np.float32
    np.testing.assert_allclose(ep.steps[1].sensor_depth, depth[1, ..., 0] * 0.001, rtol=1e-6)

    pngs = []
    for frame in depth[..., 0]:
        buf = io.BytesIO()
        Image.fromarray(frame).save(buf, format="PNG")
        pngs.append(buf.getvalue())
    raw["steps"]["observation/depth"] = np.array(pngs, object)
    ep_png = standardize_episode(raw, make_config(depth_key="observation/depth",
                                                  depth_scale=0.001), "e")
    np.testing.assert_allclose(ep_png.steps[0].sensor_depth, depth[0, ..., 0] * 0.001, rtol=1e-6)


def test_episode_bad_depth():
    raw = make_raw(2)
    raw["steps"]["observation/depth"] = np.zeros((2, 4, 4, 3))
    with pytest.raises(StandardizeError, match=r"'observation/depth'.*\(T, H, W\).*\(2, 4, 4, 3\)"):
        standardize_episode(raw, make_config(depth_key="observation/depth"), "e")
    raw["steps"]["observation/depth"] = np.array([jpeg((1, 2, 3))] * 2, object)
    with pytest.raises(StandardizeError, match=r"one channel"):
        standardize_episode(raw, make_config(depth_key="observation/depth"), "e")


def test_episode_errors():
    raw = make_raw(3)
    with pytest.raises(StandardizeError, match=r"\['observation/wrist'\].*available: \["):
        standardize_episode(raw, make_config(wrist_image_key="observation/wrist"), "e")
    short = make_raw(3)
    short["steps"]["action"] = short["steps"]["action"][:2]
    with pytest.raises(StandardizeError, match=r"differ in length.*'action': 2"):
        standardize_episode(short, make_config(), "e")
    empty = {"steps": {k: v[:0] for k, v in make_raw(2)["steps"].items()}}
    with pytest.raises(StandardizeError, match="episode has no steps"):
        standardize_episode(empty, make_config(), "e")
    one = make_raw(1)
    with pytest.raises(StandardizeError, match=r"no steps left.*source has 1"):
        standardize_episode(one, make_config(standardize="bridge_dataset",
                                             options={"recompute_from_state": False}), "e")
    bad_text = make_raw(2)
    bad_text["steps"]["language_instruction"] = np.array([b"\xff\xfe", b"ok"], object)
    with pytest.raises(StandardizeError, match="not UTF-8"):
        standardize_episode(bad_text, make_config(), "e")
    bad_image = make_raw(2)
    bad_image["steps"]["observation/image"] = np.zeros((2, 3))
    with pytest.raises(StandardizeError, match="encoded image bytes"):
        standardize_episode(bad_image, make_config(), "e")
    corrupt = make_raw(2)
    corrupt["steps"]["observation/image"] = np.array([b"not a jpeg"] * 2, object)
    with pytest.raises(StandardizeError, match="cannot rotate"):
        standardize_episode(corrupt, make_config(rotate_180=True), "e")


def test_jsonable():
    value = {"a": np.array([b"x", b"y"], object), "b": np.float32(1.5), "c": [np.int64(2)],
             "d": np.array([[1, 2]], np.int16), "e": b"\xff"}
    assert jsonable(value) == {"a": ["x", "y"], "b": 1.5, "c": [2], "d": [[1, 2]], "e": "\ufffd"}


def _flatten(tree, prefix=""):
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}/"))
        else:
            out[prefix + key] = value.numpy()
    return out


def test_bridge_debug_sample_with_bundled_config():
    """The bundled bridge_dataset config against real bridge_dataset episodes (SPEC §5)."""
    if not BRIDGE_DEBUG.is_dir():
        pytest.skip(f"{BRIDGE_DEBUG} not present")
    tfds = pytest.importorskip("tensorflow_datasets")
    from armdata.schemas.config import load_config

    builder = tfds.builder_from_directory(str(BRIDGE_DEBUG))
    dataset = builder.as_dataset(split="train", decoders={"steps": tfds.decode.SkipDecoding()})
    config = load_config("bridge_dataset")
    for record in dataset.take(3):
        raw = {"steps": _flatten(record["steps"]),
               "episode_metadata": _flatten(record["episode_metadata"], "episode_metadata/")}
        ep = standardize_episode(raw, config, "ep")
        source = raw["steps"]["action"]
        state = raw["steps"]["observation/state"]
        T = len(source)
        assert ep.num_steps == T and [s.index for s in ep.steps] == list(range(1, T - 1))
        np.testing.assert_allclose(ep.actions()[:, :6], state[2:, :6] - state[1:-1, :6],
                                   atol=1e-6)
        assert set(ep.actions()[:, 6].tolist()) <= {0.0, 1.0}
        assert ep.steps[0].instruction and ep.states().shape == (T - 2, 7)
        assert decode_rgb(ep.steps[0].image).shape == (64, 64, 3)
        assert isinstance(ep.metadata["file_path"], str)
        json.dumps(ep.metadata)


# --- generic: layout, quaternions, more gripper conventions, code-point text ----------------

def test_generic_layout_picks_columns_and_constants():
    raw = rng_actions(4, 15)
    actions, keep = FUNCTIONS["generic"](
        {"action": raw}, {"layout": [-8, -7, -6, "zero", -4, "one", -2],
                          "gripper": "minus_one_closed"})
    np.testing.assert_array_equal(actions[:, :3], raw[:, 7:10])
    assert actions[:, 3].tolist() == [0] * 4 and actions[:, 5].tolist() == [1] * 4
    np.testing.assert_array_equal(actions[:, 4], raw[:, 11])
    np.testing.assert_array_equal(actions[:, 6], np.clip(raw[:, 13], 0, 1))
    assert keep.tolist() == [0, 1, 2, 3]
    with pytest.raises(StandardizeError, match=r"layout index 9 is outside the 2 action dims"):
        FUNCTIONS["generic"]({"action": raw[:, :2]}, {"layout": [0, 1, 9, 0, 0, 0, 0],
                                                      "gripper": "open_is_one"})
    with pytest.raises(ValueError, match="layout must be 7 entries"):
        FUNCTIONS["generic"].check_options({"layout": [0, 1, "two"], "gripper": "open_is_one"})


def test_generic_quaternion_becomes_euler_like_tensorflow_graphics():
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(5)
    q = rng.normal(size=(6, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    raw = np.concatenate([rng.normal(size=(6, 3)), q, rng.uniform(-1, 1, (6, 1))], axis=1)
    actions, _ = FUNCTIONS["generic"]({"action": raw.astype(np.float32)},
                                      {"quaternion_at": 3, "gripper": "minus_one_open"})
    # R = Rz(yaw) Ry(pitch) Rx(roll), quaternion (x, y, z, w): scipy's extrinsic "xyz"
    expected = Rotation.from_quat(raw[:, 3:7]).as_euler("xyz")
    np.testing.assert_allclose(actions[:, 3:6], expected, atol=1e-5)
    np.testing.assert_allclose(actions[:, 6], 1 - np.clip(raw[:, 7], 0, 1), atol=1e-7)
    with pytest.raises(StandardizeError, match="quaternion_at 5: action keys"):
        FUNCTIONS["generic"]({"action": raw.astype(np.float32)},
                             {"quaternion_at": 5, "gripper": "open_is_one"})


def test_instruction_from_zero_padded_code_points():
    raw = make_raw(2)
    text = "push the blue cube to the ☆"
    points = np.zeros((2, 512), np.int32)
    points[:, :len(text)] = [ord(c) for c in text]
    raw["steps"]["language_instruction"] = points
    ep = standardize_episode(raw, make_config(), "e")
    assert [s.instruction for s in ep.steps] == [text, text]
    points[1, 0] = -5
    with pytest.raises(StandardizeError, match="step 1: not Unicode code points"):
        standardize_episode(raw, make_config(), "e")
