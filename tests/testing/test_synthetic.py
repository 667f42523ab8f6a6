"""The synthetic RLDS dataset: tfds layout, determinism, geometry of the rendering, faults."""
from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow_datasets as tfds

from armdata.models.camera import pixel_rays
from armdata.schemas.config import load_config
from armdata.testing.synthetic import (OCCLUDER_DEPTH, PLACES, gripper_pixels, render_episode,
                                write_synthetic_rlds)
from armdata.schemas.episode import decode_rgb

SIZE = (96, 128)          # (height, width): not square, so that a swapped axis shows
STEPS = 16
BAD_STEP = STEPS // 2
FAULTS = {1: "corrupt_jpeg", 2: "nan_action", 3: "inf_state", 4: "missing_instruction",
          5: "empty", 6: "short"}
CLEAN = (0, 7)


def read_episodes(version_dir) -> dict[int, dict]:
    builder = tfds.builder_from_directory(str(version_dir))
    ds = builder.as_dataset(split="train", decoders={"steps": tfds.decode.SkipDecoding()})
    return {int(ep["episode_metadata"]["episode_id"]): ep for ep in tfds.as_numpy(ds)}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    path = write_synthetic_rlds(root, num_episodes=8, num_steps=STEPS, image_size=SIZE, seed=3,
                                faults=FAULTS, name="tiny_arm")
    return path, read_episodes(path)


def test_layout_and_name(dataset):
    path, episodes = dataset
    assert path.parts[-2:] == ("tiny_arm", "1.0.0")
    info = json.loads((path / "dataset_info.json").read_text())
    assert info["name"] == "tiny_arm"
    assert all(p.name.startswith("tiny_arm-train.tfrecord-") for p in path.glob("*.tfrecord*"))
    builder = tfds.builder_from_directory(str(path))
    assert builder.info.name == "tiny_arm" and builder.info.splits["train"].num_examples == 8
    assert sorted(episodes) == list(range(8))


def test_shapes_and_flags(dataset):
    _, episodes = dataset
    for index, ep in episodes.items():
        steps = ep["steps"]
        n = {5: 0, 6: 1}.get(index, STEPS)
        assert steps["observation"]["image"].shape == (n,)
        assert steps["observation"]["depth"].shape == (n, *SIZE)
        assert steps["observation"]["depth"].dtype == np.float32
        assert steps["observation"]["state"].shape == (n, 7)
        assert steps["action"].shape == (n, 7)
        assert steps["is_first"].tolist() == [t == 0 for t in range(n)]
        assert steps["is_last"].tolist() == [t == n - 1 for t in range(n)]
        assert steps["is_terminal"].tolist() == steps["is_last"].tolist()
        assert steps["reward"].tolist() == [float(t == n - 1) for t in range(n)]
        meta = ep["episode_metadata"]
        assert meta["file_path"].decode().endswith(f"episode_{index:05d}")
        extrinsics = meta["camera_extrinsics"]
        assert meta["camera_intrinsics"].shape == (3, 3) and extrinsics.shape == (4, 4)
        np.testing.assert_allclose(extrinsics[3], [0, 0, 0, 1])
        np.testing.assert_allclose(extrinsics[:3, :3] @ extrinsics[:3, :3].T, np.eye(3), atol=1e-5)
    for index in CLEAN:
        steps = episodes[index]["steps"]
        assert decode_rgb(steps["observation"]["image"][0]).shape == (*SIZE, 3)
        assert decode_rgb(steps["observation"]["wrist_image"][0]).shape == (*SIZE, 3)
        assert steps["language_instruction"][0].decode().strip()


def test_deterministic_for_a_seed(dataset, tmp_path):
    _, episodes = dataset
    again = read_episodes(write_synthetic_rlds(tmp_path / "a", num_episodes=1, num_steps=STEPS,
                                               image_size=SIZE, seed=3, name="tiny_arm"))
    other = read_episodes(write_synthetic_rlds(tmp_path / "b", num_episodes=1, num_steps=STEPS,
                                               image_size=SIZE, seed=4, name="tiny_arm"))
    first, second, third = episodes[0]["steps"], again[0]["steps"], other[0]["steps"]
    for key in ("image", "wrist_image", "depth", "state"):
        np.testing.assert_array_equal(first["observation"][key], second["observation"][key])
    np.testing.assert_array_equal(first["action"], second["action"])
    np.testing.assert_array_equal(first["language_instruction"], second["language_instruction"])
    np.testing.assert_array_equal(episodes[0]["episode_metadata"]["camera_extrinsics"],
                                  again[0]["episode_metadata"]["camera_extrinsics"])
    assert not np.array_equal(first["observation"]["state"], third["observation"]["state"])


def test_canonical_actions_and_pick(dataset):
    _, episodes = dataset
    for index in CLEAN:
        steps = episodes[index]["steps"]
        state, action = steps["observation"]["state"], steps["action"]
        np.testing.assert_allclose(action[:-1, :6], state[1:, :6] - state[:-1, :6], atol=1e-6)
        np.testing.assert_array_equal(action[-1, :6], 0)
        np.testing.assert_array_equal(action[:-1, 6], state[1:, 6] > 0.5)
        assert set(np.unique(action[:, 6])) == {0.0, 1.0}
        opening = state[:, 6]
        # Opens at the start, closes on the block mid-episode, opens again near the end.
        assert opening[0] == 1 and opening[-1] == 1
        assert opening[STEPS // 4:3 * STEPS // 4].min() == 0
        assert (state[:, 2] > 0).all()


def test_gripper_drawn_at_projected_position(dataset):
    _, episodes = dataset
    for index in CLEAN:
        ep = episodes[index]
        meta = ep["episode_metadata"]
        pixels = gripper_pixels(ep["steps"]["observation"]["state"], meta["camera_intrinsics"],
                                meta["camera_extrinsics"])
        reference = render_episode(3, index, STEPS, SIZE)
        np.testing.assert_allclose(pixels, gripper_pixels(reference.state, reference.intrinsics,
                                                          reference.extrinsics), atol=1e-3)
        inside = ((pixels >= 0) & (pixels < [SIZE[1], SIZE[0]])).all(axis=1)
        assert inside.mean() >= 0.9
        empty = render_episode(3, index, STEPS, SIZE, with_gripper=False).images
        drawn = 0
        for t in np.flatnonzero(inside & reference.gripper_visible):
            frame = decode_rgb(ep["steps"]["observation"]["image"][t]).astype(np.float32)
            x, y = np.round(pixels[t]).astype(int)
            window = np.s_[max(y - 4, 0):y + 5, max(x - 4, 0):x + 5]
            drawn += np.abs(frame[window] - empty[t][window]).mean() > 25
        assert drawn >= 0.9 * (inside & reference.gripper_visible).sum()


def test_sensor_depth_matches_the_table_plane(dataset):
    _, episodes = dataset
    for index in CLEAN:
        ep = episodes[index]
        meta = ep["episode_metadata"]
        depth = ep["steps"]["observation"]["depth"]
        assert np.isfinite(depth).all() and (depth > 0).all()
        centre, rays = pixel_rays(meta["camera_intrinsics"], meta["camera_extrinsics"], *SIZE)
        assert 0.4 < centre[2] < 0.6                                    # camera height
        heights = centre[2] + depth[..., None] * rays[..., 2:]          # back-projected z
        heights = heights[depth != OCCLUDER_DEPTH]
        assert heights.min() > -1e-3                                     # nothing under the table
        assert (np.abs(heights) < 1e-3).mean() > 0.8                     # mostly table
        assert heights.max() < 0.35                                      # blocks and gripper


def test_occluder_covers_the_gripper():
    episodes = [render_episode(0, i, 24) for i in range(12)]
    hidden = [(ep, t) for ep in episodes for t in np.flatnonzero(~ep.gripper_visible)]
    assert hidden and len(hidden) < 0.2 * sum(len(ep.state) for ep in episodes)
    for ep, t in hidden:
        x, y = np.round(gripper_pixels(ep.state, ep.intrinsics, ep.extrinsics)[t]).astype(int)
        assert ep.depth[t, y, x] == np.float32(OCCLUDER_DEPTH)


def test_instruction_names_what_happens():
    phrases = {p: side for side, (_, texts) in PLACES.items() for p in texts}
    for index in range(6):
        ep = render_episode(1, index, 48)
        side = next(s for p, s in phrases.items() if ep.instruction.endswith(p))
        after_grasp = np.arange(48) > np.argmin(ep.state[:, 6])
        reopened = np.flatnonzero((ep.state[:, 6] > 0.5) & after_grasp)
        release_xy = ep.state[reopened[0], :2]
        assert np.linalg.norm(release_xy - PLACES[side][0]) < 0.08, (ep.instruction, release_xy)


def test_faults(dataset):
    _, episodes = dataset
    images = episodes[1]["steps"]["observation"]["image"]
    with pytest.raises(ValueError):
        decode_rgb(images[BAD_STEP])
    for t in set(range(STEPS)) - {BAD_STEP}:
        decode_rgb(images[t])
    action = episodes[2]["steps"]["action"]
    assert np.argwhere(np.isnan(action)).tolist() == [[BAD_STEP, 0]]
    state = episodes[3]["steps"]["observation"]["state"]
    assert np.argwhere(np.isposinf(state)).tolist() == [[BAD_STEP, 2]]
    assert np.isfinite(state[np.arange(STEPS) != BAD_STEP]).all()
    assert set(episodes[4]["steps"]["language_instruction"].tolist()) == {b""}
    assert len(episodes[5]["steps"]["action"]) == 0
    short = episodes[6]["steps"]
    assert len(short["action"]) == 1 and short["is_first"][0] and short["is_last"][0]
    for index in CLEAN:
        steps = episodes[index]["steps"]
        assert np.isfinite(steps["action"]).all()
        assert np.isfinite(steps["observation"]["state"]).all()


@pytest.mark.parametrize("kwargs, error", [
    ({"faults": {0: "melted"}}, ValueError),
    ({"faults": {8: "empty"}}, ValueError),
    ({"num_steps": 1}, ValueError),
    ({"name": "Bad-Name"}, ValueError),
])
def test_bad_arguments(tmp_path, kwargs, error):
    with pytest.raises(error):
        write_synthetic_rlds(tmp_path, **kwargs)
    assert not any(tmp_path.iterdir())


def test_refuses_to_overwrite(dataset):
    path, _ = dataset
    with pytest.raises(FileExistsError):
        write_synthetic_rlds(path.parents[1], name="tiny_arm")


def feature(features, key: str):
    for part in key.split("/"):
        features = features[part]
    return features


def test_demo_config_points_at_the_features(dataset):
    path, _ = dataset
    config = load_config("armdata_demo")
    features = tfds.builder_from_directory(str(path)).info.features
    steps = features["steps"].feature
    assert feature(steps, config.image_key).shape == (*SIZE, 3)
    assert feature(steps, config.wrist_image_key).shape == (*SIZE, 3)
    assert feature(steps, config.depth_key).shape == SIZE
    assert feature(steps, config.state_key).shape == (7,)
    assert feature(steps, config.action_key).shape == (7,)
    assert isinstance(feature(steps, config.instruction_key), tfds.features.Text)
    assert feature(features, config.camera.intrinsics).shape == (3, 3)
    assert feature(features, config.camera.extrinsics).shape == (4, 4)
    assert config.standardize == "identity" and config.arms[0].xyz_indices == (0, 1, 2)
