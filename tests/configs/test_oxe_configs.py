"""Every Open-X magic-soup config builds a mock of its dataset with `--stages actions`.

Each mock is written with tfds' own writer from the dataset's TFDS feature spec (below, in
`tests/configs/oxe_mocks.py` notation: keys, shapes, dtypes, nesting, image encodings, kuka's zlib
tensors), 3 episodes × 10 steps. Each dataset's expected canonical actions are written here from
the published transform (Octo `oxe_standardization_transforms.py` / OpenVLA's copy), with this
module's own loop-by-loop gripper rules, and compared with every row; so are the instructions
and the primary/wrist frames (bytes as written).

Where each spec was checked is written beside its entry. The TFDS catalog pages give keys, shapes,
dtypes, nesting and version, not image encodings: jpeg for Google's conversions and png for the
`*_converted_externally_to_rlds` ones are unverified except where an entry says otherwise.
"""
from __future__ import annotations

import json
from typing import Any, Callable

import numpy as np
import pytest

from armdata.schemas.config import load_config
from tests.conftest import armdata, build, read_rows, rejected
from tests.configs.oxe_mocks import write_mock

# --- the published gripper rules, written out as loops -----------------------------------------


def rel2abs(g: np.ndarray) -> np.ndarray:
    """Octo rel2abs_gripper_actions: < -0.1 opens (+1), > 0.1 closes (-1), else hold; the scan
    starts from minus the first command (open if none); then -1/+1 → 0/1. TensorFlow compares
    the float32 actions with float32 constants, so a stored 0.1 is no command."""
    g = np.asarray(g, np.float32).reshape(-1)
    limit = np.float32(0.1)
    commands = [1 if v < -limit else -1 if v > limit else 0 for v in g]
    first = next((c for c in commands if c != 0), 0)
    carry = -first if first else 1
    out = []
    for c in commands:
        carry = c if c != 0 else carry
        out.append(carry / 2 + 0.5)
    return np.array(out)


def binarize(g: np.ndarray) -> np.ndarray:
    """Octo binarize_gripper_actions, the reverse scan its docstring gives."""
    g = np.asarray(g, np.float64).reshape(-1)
    out, carry = np.empty_like(g), g[-1]
    for i in reversed(range(len(g))):
        if g[i] > 0.95 or g[i] < 0.05:
            carry = float(g[i] > 0.95)
        out[i] = carry
    return out


def invert(g):
    return 1 - np.asarray(g, np.float64).reshape(-1)


def clip01(g):
    return np.clip(np.asarray(g, np.float64).reshape(-1), 0, 1)


def euler(q: np.ndarray) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.from_quat(np.asarray(q, np.float64)).as_euler("xyz")


def col(*arrays) -> np.ndarray:
    return np.concatenate([np.asarray(a, np.float64).reshape(len(a), -1) for a in arrays], axis=1)


def zeros(s, n):
    return np.zeros((len(s["action" if "action" in s else "action/world_vector"]), n))


# --- gripper values that exercise each convention ----------------------------------------------

def relative_commands(rng, e, T):
    """Idle steps, exact ±0.1 (no command), then commands; the first command alternates."""
    g = np.zeros((T, 1), np.float32)
    g[1, 0] = 0.1 if e % 2 else -0.1
    g[3, 0] = -1.0 if e % 2 else 1.0
    g[6, 0] = 1.0 if e % 2 else -1.0
    g[8, 0] = 0.05
    return g


def between(lo: float, hi: float, width: int | None = 1):
    """Absolute gripper values in [lo, hi] with both ends and in-between values."""
    def values(rng, e, T):
        v = np.where(np.arange(T) % 3 == 0, lo, np.where(np.arange(T) % 3 == 1, hi,
                     rng.uniform(lo, hi, T))).astype(np.float32)
        return v if width is None else v.reshape(T, width)
    return values


def with_gripper(width: int, index: int, lo: float, hi: float):
    """A (T, width) float field whose dim `index` is a gripper in [lo, hi]."""
    def values(rng, e, T):
        v = (rng.normal(size=(T, width)) * 0.1).astype(np.float32)
        v[:, index] = between(lo, hi, None)(rng, e, T)
        return v
    return values


def quaternion_action(rng, e, T):
    """xyz delta, a unit quaternion (x, y, z, w), gripper in [-1, 1]."""
    q = rng.normal(size=(T, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return np.concatenate([rng.normal(size=(T, 3)) * 0.01, q, between(-1, 1)(rng, e, T)],
                          axis=1).astype(np.float32)


def code_points(rng, e, T):
    text = f"push the red star to block {e}"
    out = np.zeros((T, 512), np.int32)
    out[:, :len(text)] = [ord(c) for c in text]
    return out


def bridge_gripper(rng, e, T):
    """Bridge: settled values, an in-between run, and (episode 1) an in-between ending."""
    a = (rng.normal(size=(T, 7)) * 0.1).astype(np.float32)
    a[0, :6] = 0
    a[:, 6] = [1, 1, 0.6, 0.3, 0.0, 0.0, 0.02, 0.5, 0.99, 1.0]
    if e == 1:
        a[-2:, 6] = [0.7, 0.4]
    return a


# --- the feature specs (TFDS catalog) ----------------------------------------------------------

FLAGS = {"is_first": "bool", "is_last": "bool", "is_terminal": "bool", "reward": "f32"}
RLDS = {**FLAGS, "discount": "f32", "language_instruction": "text", "language_embedding": "f32[512]"}
PATH = {"episode_metadata": {"file_path": "text"}}
OXE_TEXT = {"natural_language_embedding": "f32[512]", "natural_language_instruction": "str"}
OXE_ACTION = {"rotation_delta": "f32[3]", "terminate_episode": "f32", "world_vector": "f32[3]"}


def rt1_action(gripper: str = "f32[1]", terminate: str = "i32[3]") -> dict:
    return {"base_displacement_vector": "f32[2]", "base_displacement_vertical_rotation": "f32[1]",
            "gripper_closedness_action": gripper, "rotation_delta": "f32[3]",
            "terminate_episode": terminate, "world_vector": "f32[3]"}


FMB_VIEWS = ("side_1", "side_2", "wrist_1", "wrist_2")


def externally(action: str, observation: dict, **metadata) -> dict:
    return {"steps": {**RLDS, "action": action, "observation": observation},
            "episode_metadata": {"file_path": "text", **metadata}}


# name -> (version, spec, overrides, expected canonical (T', 7) from the flat steps, kept slice)
Expect = Callable[[dict[str, Any]], np.ndarray]
DATASETS: dict[str, tuple[str, dict, dict, Expect, slice]] = {
    # Spec: TFDS catalog docs/catalog/fractal20220817_data.md (tensorflow/datasets): every step
    # key, shape, dtype; the episode-level `aspects` and `attributes`; 0.1.0.
    # Transform: Octo/OpenVLA rt1_dataset_transform: gripper_closedness_action as relative
    # commands (the catalog calls it a "continuous gripper position").
    "fractal20220817_data": ("0.1.0", {"steps": {**FLAGS, "action": rt1_action(), "observation": {
        **OXE_TEXT, "base_pose_tool_reached": "f32[7]", "gripper_closed": "f32[1]",
        "gripper_closedness_commanded": "f32[1]", "height_to_bottom": "f32[1]",
        "image": "jpeg[256,320,3]", "orientation_box": "f32[2,3]", "orientation_start": "f32[4]",
        "robot_orientation_positions_box": "f32[3,3]", "rotation_delta_to_go": "f32[3]",
        "src_rotation": "f32[4]", "vector_to_go": "f32[3]", "workspace_bounds": "f32[3,3]"}},
        "aspects": {k: "bool" for k in ("already_success", "feasible", "has_aspects", "success",
                                         "undesirable")},
        "attributes": {f"{k}{suffix}": kind for k in ("collection_mode", "data_type", "env",
                                                      "location", "objects_family", "task_family")
                       for suffix, kind in (("", "i64"), ("_name", "str"))}},
        {"action/gripper_closedness_action": relative_commands},
        lambda s: col(s["action/world_vector"], s["action/rotation_delta"],
                      rel2abs(s["action/gripper_closedness_action"])), slice(None)),
    # Spec: TFDS catalog docs/catalog/kuka.md: keys, shapes, dtypes, episode `success`, 0.1.0.
    # zlib: Octo's kuka transform decodes base_pose_tool_reached and gripper_closed; a public
    # copy's features.json (HF WeiChow/VLATrainingDataset kuka/0.1.0, images resized) marks
    # gripper_closed and task_id zlib. The other tensors' encoding: not found. Transform:
    # Octo/OpenVLA kuka_dataset_transform.
    "kuka": ("0.1.0", {"steps": {**FLAGS, "action": rt1_action(), "observation": {
        **OXE_TEXT, "clip_function_input/base_pose_tool_reached": "zlib f32[7]",
        "clip_function_input/workspace_bounds": "f32[3,3]", "gripper_closed": "zlib f32[1]",
        "height_to_bottom": "f32[1]", "image": "jpeg[512,640,3]", "task_id": "zlib f32[1]"}},
        "success": "bool"},
        {"action/gripper_closedness_action": relative_commands},
        lambda s: col(s["action/world_vector"], s["action/rotation_delta"],
                      rel2abs(s["action/gripper_closedness_action"])), slice(None)),
    # Spec: the real sample's features.json (../shared/data/bridge_debug, Octo's test set): every
    # key, dtype, jpeg, episode_metadata, 1.0.0 (not in the TFDS catalog; its images are 64 x 64,
    # the 256 x 256 here is not from a primary source). Transform: OpenVLA bridge_orig / Octo.
    "bridge_dataset": ("1.0.0", {"steps": {**RLDS, "action": "f32[7]", "observation": {
        "image_0": "jpeg[256,256,3]", "image_1": "jpeg[256,256,3]", "image_2": "jpeg[256,256,3]",
        "image_3": "jpeg[256,256,3]", "state": "f32[7]"}},
        "episode_metadata": {"episode_id": "i32", "file_path": "text", "has_image_0": "bool",
                             "has_image_1": "bool", "has_image_2": "bool", "has_image_3": "bool",
                             "has_language": "bool"}},
        {"action": bridge_gripper},
        # OpenVLA bridge_orig: drop step 0, binarize, relabel from states, drop the last step
        lambda s: col(s["observation/state"][2:, :6] - s["observation/state"][1:-1, :6],
                      binarize(s["action"][1:, 6])[:-1]), slice(1, -1)),
    # Spec: TFDS catalog docs/catalog/taco_play.md: matches, 0.1.0. The catalog describes the
    # gripper dim as -1 open / 1 close; CALVIN's format (mees/calvin dataset/README.md: close = -1,
    # open = 1) and Octo/OpenVLA (clip to [0, 1] as 1 = open) say the opposite: Octo's kept.
    "taco_play": ("0.1.0", {"steps": {**FLAGS, "action": {
        "actions": "f32[7]", "rel_actions_gripper": "f32[7]", "rel_actions_world": "f32[7]",
        "terminate_episode": "f32"}, "observation": {
        **OXE_TEXT, "depth_gripper": "f32[84,84]", "depth_static": "f32[150,200]",
        "rgb_gripper": "jpeg[84,84,3]", "rgb_static": "jpeg[150,200,3]", "robot_obs": "f32[15]",
        "structured_language_instruction": "str"}}},
        {"action/rel_actions_world": with_gripper(7, 6, -1, 1)},
        lambda s: col(s["action/rel_actions_world"][:, :6],
                      clip01(s["action/rel_actions_world"][:, 6])), slice(None)),
    # Spec: TFDS catalog docs/catalog/jaco_play.md: matches, 0.1.0 (the gripper command is not
    # described there; Octo/OpenVLA: relative).
    "jaco_play": ("0.1.0", {"steps": {**FLAGS, "action": {
        "gripper_closedness_action": "f32[1]", "terminate_episode": "i32[3]",
        "world_vector": "f32[3]"}, "observation": {
        **OXE_TEXT, "end_effector_cartesian_pos": "f32[7]",
        "end_effector_cartesian_velocity": "f32[6]", "image": "jpeg[224,224,3]",
        "image_wrist": "jpeg[224,224,3]", "joint_pos": "f32[8]"}}},
        {"action/gripper_closedness_action": relative_commands},
        lambda s: col(s["action/world_vector"], zeros(s, 3),
                      rel2abs(s["action/gripper_closedness_action"])), slice(None)),
    # Spec: TFDS catalog docs/catalog/berkeley_cable_routing.md: matches, 0.1.0 (no gripper
    # action; Octo/OpenVLA: 0).
    "berkeley_cable_routing": ("0.1.0", {"steps": {**FLAGS, "action": OXE_ACTION, "observation": {
        **OXE_TEXT, "image": "jpeg[128,128,3]", "robot_state": "f32[7]",
        "top_image": "jpeg[128,128,3]", "wrist225_image": "jpeg[128,128,3]",
        "wrist45_image": "jpeg[128,128,3]"}}}, {},
        lambda s: col(s["action/world_vector"], s["action/rotation_delta"], zeros(s, 1)),
        slice(None)),
    "roboturk": ("0.1.0", {"steps": {**FLAGS, "action": {
        **OXE_ACTION, "gripper_closedness_action": "f32[1]"}, "observation": {
        **OXE_TEXT, "front_rgb": "png[480,640,3]"}}},
        {"action/gripper_closedness_action": between(-1, 1)},
        lambda s: col(s["action/world_vector"], s["action/rotation_delta"],
                      invert(clip01(s["action/gripper_closedness_action"]))), slice(None)),
    # Spec: TFDS catalog docs/catalog/nyu_door_opening_surprising_effectiveness.md: matches,
    # 0.1.0. Octo/OpenVLA file `image` as the wrist camera.
    "nyu_door_opening_surprising_effectiveness": ("0.1.0", {"steps": {**FLAGS, "action": {
        **OXE_ACTION, "gripper_closedness_action": "f32[1]"}, "observation": {
        **OXE_TEXT, "image": "jpeg[720,960,3]"}}},
        {"action/gripper_closedness_action": relative_commands},
        lambda s: col(s["action/world_vector"], s["action/rotation_delta"],
                      rel2abs(s["action/gripper_closedness_action"])), slice(None)),
    "viola": ("0.1.0", {"steps": {**FLAGS, "action": {
        **OXE_ACTION, "gripper_closedness_action": "f32"}, "observation": {
        **OXE_TEXT, "agentview_rgb": "png[224,224,3]", "ee_states": "f32[16]",
        "eye_in_hand_rgb": "png[224,224,3]", "gripper_states": "f32[2]",
        "joint_states": "f32[7]"}}},
        {"action/gripper_closedness_action": between(-1, 1, None)},
        lambda s: col(s["action/world_vector"], s["action/rotation_delta"],
                      invert(clip01(s["action/gripper_closedness_action"]))), slice(None)),
    # Spec: TFDS catalog docs/catalog/berkeley_autolab_ur5.md, 0.1.0: image_with_depth is a
    # float32 Image; gripper_closedness_action: 1 close, -1 open, 0 no change.
    "berkeley_autolab_ur5": ("0.1.0", {"steps": {**FLAGS, "action": {
        **OXE_ACTION, "gripper_closedness_action": "f32"}, "observation": {
        **OXE_TEXT, "hand_image": "jpeg[480,640,3]", "image": "jpeg[480,640,3]",
        "image_with_depth": "image f32[480,640,1]", "robot_state": "f32[15]"}}},
        {"action/gripper_closedness_action": lambda rng, e, T: relative_commands(rng, e, T)[:, 0]},
        lambda s: col(s["action/world_vector"], s["action/rotation_delta"],
                      rel2abs(s["action/gripper_closedness_action"])), slice(None)),
    "toto": ("0.1.0", {"steps": {**FLAGS, "action": {**OXE_ACTION, "open_gripper": "bool"},
                                 "observation": {**OXE_TEXT, "image": "jpeg[480,640,3]",
                                                 "state": "f32[7]"}}}, {},
        lambda s: col(s["action/world_vector"], s["action/rotation_delta"],
                      s["action/open_gripper"].astype(np.float64)), slice(None)),
    "language_table": ("0.1.0", {"steps": {**FLAGS, "action": "f32[2]", "observation": {
        "effector_target_translation": "f32[2]", "effector_translation": "f32[2]",
        "instruction": "i32[512]", "rgb": "jpeg[360,640,3]"}}},
        {"observation/instruction": code_points},
        lambda s: col(s["action"], zeros(s, 4), np.ones(len(s["action"]))), slice(None)),
    # Spec: TFDS catalog docs/catalog/stanford_hydra_dataset_converted_externally_to_rlds.md,
    # 0.1.0, with steps/is_dense (a bool Scalar); the action's last dim: close gripper.
    "stanford_hydra_dataset_converted_externally_to_rlds": ("0.1.0", {"steps": {
        **RLDS, "action": "f32[7]", "is_dense": "bool", "observation": {
            "image": "png[240,320,3]", "state": "f32[27]", "wrist_image": "png[240,320,3]"}},
        **PATH},
        {"action": with_gripper(7, 6, 0, 1)},
        lambda s: col(s["action"][:, :6], invert(s["action"][:, 6])), slice(None)),
    # Spec: TFDS catalog docs/catalog/austin_buds_dataset_converted_externally_to_rlds.md:
    # matches, 0.1.0.
    "austin_buds_dataset_converted_externally_to_rlds": ("0.1.0", externally(
        "f32[7]", {"image": "png[128,128,3]", "state": "f32[24]", "wrist_image": "png[128,128,3]"}),
        {"action": with_gripper(7, 6, -1, 1)},
        lambda s: col(s["action"][:, :6], invert(clip01(s["action"][:, 6]))), slice(None)),
    # Spec: TFDS catalog docs/catalog/nyu_franka_play_dataset_converted_externally_to_rlds.md:
    # matches, 0.1.0; action = 7 joint velocities, xyz, rpy, gripper, terminate.
    "nyu_franka_play_dataset_converted_externally_to_rlds": ("0.1.0", externally(
        "f32[15]", {"depth": "i32[128,128,1]", "depth_additional_view": "i32[128,128,1]",
                    "image": "png[128,128,3]", "image_additional_view": "png[128,128,3]",
                    "state": "f32[13]"}),
        {"action": with_gripper(15, 13, -1, 1)},
        lambda s: col(s["action"][:, -8:-2], clip01(s["action"][:, -2])), slice(None)),
    # Spec: no TFDS catalog page found; the dataset author's builder (youngwoon/
    # furniture_bench_rlds_dataset_builder furniture_bench/furniture_bench_dataset_builder.py):
    # matches, png. 0.1.0: the version public copies of the Open-X data are stored under (HF
    # WeiChow/VLATrainingDataset, IPEC-COMMUNITY); the builder itself says 1.0.0.
    "furniture_bench_dataset_converted_externally_to_rlds": ("0.1.0", {"steps": {
        **RLDS, "action": "f32[8]", "skill_completion": "f32", "observation": {
            "image": "png[224,224,3]", "state": "f32[35]", "wrist_image": "png[224,224,3]"}},
        "episode_metadata": {"file_path": "text", "furniture": "text",
                             "initial_randomness": "text"}},
        {"action": quaternion_action},
        lambda s: col(s["action"][:, :3], euler(s["action"][:, 3:7]),
                      invert(clip01(s["action"][:, 7]))), slice(None)),
    # Spec: TFDS catalog docs/catalog/ucsd_kitchen_dataset_converted_externally_to_rlds.md:
    # matches, 0.1.0 (action: end-effector position, orientation, gripper, terminate).
    "ucsd_kitchen_dataset_converted_externally_to_rlds": ("0.1.0", externally(
        "f32[8]", {"image": "png[480,640,3]", "state": "f32[21]"}), {},
        lambda s: col(s["action"][:, :7]), slice(None)),
    # Spec: TFDS catalog docs/catalog/austin_sailor_dataset_converted_externally_to_rlds.md:
    # matches, 0.1.0.
    "austin_sailor_dataset_converted_externally_to_rlds": ("0.1.0", externally(
        "f32[7]", {"image": "png[128,128,3]", "state": "f32[8]", "state_ee": "f32[16]",
                   "state_gripper": "f32[2]", "state_joint": "f32[7]",
                   "wrist_image": "png[128,128,3]"}),
        {"action": with_gripper(7, 6, -1, 1)},
        lambda s: col(s["action"][:, :6], invert(clip01(s["action"][:, 6]))), slice(None)),
    # Spec: TFDS catalog docs/catalog/austin_sirius_dataset_converted_externally_to_rlds.md,
    # 0.1.0 (intv_label and action_mode are (1,) tensors).
    "austin_sirius_dataset_converted_externally_to_rlds": ("0.1.0", {"steps": {
        **RLDS, "action": "f32[7]", "action_mode": "f32[1]", "intv_label": "f32[1]",
        "observation": {"image": "png[84,84,3]", "state": "f32[8]", "state_ee": "f32[16]",
                        "state_gripper": "f32[1]", "state_joint": "f32[7]",
                        "wrist_image": "png[84,84,3]"}}, **PATH},
        {"action": with_gripper(7, 6, -1, 1)},
        lambda s: col(s["action"][:, :6], invert(clip01(s["action"][:, 6]))), slice(None)),
    # Spec: TFDS catalog docs/catalog/bc_z.md: matches, 0.1.0 (target_close: the closure to
    # reach, not a delta).
    "bc_z": ("0.1.0", {"steps": {**FLAGS, "action": {
        "future/axis_angle_residual": "f32[30]", "future/target_close": "i64[10]",
        "future/xyz_residual": "f32[30]"}, "observation": {
        **OXE_TEXT, "episode_success": "f32", "image": "jpeg[171,213,3]",
        "present/autonomous": "i64", "present/axis_angle": "f32[3]",
        "present/intervention": "i64", "present/sensed_close": "f32[1]", "present/xyz": "f32[3]",
        "sequence_length": "i64"}}}, {},
        lambda s: col(s["action/future/xyz_residual"][:, :3],
                      s["action/future/axis_angle_residual"][:, :3],
                      invert(s["action/future/target_close"][:, 0])), slice(None)),
    # Spec: TFDS catalog docs/catalog/dlr_edan_shared_control_converted_externally_to_rlds.md:
    # matches, 0.1.0 (the action's description names 6 dims, not the gripper; Octo inverts it).
    "dlr_edan_shared_control_converted_externally_to_rlds": ("0.1.0", externally(
        "f32[7]", {"image": "png[360,640,3]", "state": "f32[7]"}),
        {"action": with_gripper(7, 6, 0, 1)},
        lambda s: col(s["action"][:, :6], invert(s["action"][:, 6])), slice(None)),
    # Spec: TFDS catalog docs/catalog/iamlab_cmu_pickup_insert_converted_externally_to_rlds.md:
    # matches, 0.1.0 (action: position, quaternion, gripper open/close).
    "iamlab_cmu_pickup_insert_converted_externally_to_rlds": ("0.1.0", externally(
        "f32[8]", {"image": "png[360,640,3]", "state": "f32[20]",
                   "wrist_image": "png[240,320,3]"}),
        {"action": quaternion_action},
        lambda s: col(s["action"][:, :3], euler(s["action"][:, 3:7]), s["action"][:, 7]),
        slice(None)),
    # Spec: TFDS catalog docs/catalog/utaustin_mutex.md: matches, 0.1.0.
    "utaustin_mutex": ("0.1.0", externally(
        "f32[7]", {"image": "png[128,128,3]", "state": "f32[24]",
                   "wrist_image": "png[128,128,3]"}),
        {"action": with_gripper(7, 6, -1, 1)},
        lambda s: col(s["action"][:, :6], invert(clip01(s["action"][:, 6]))), slice(None)),
    # Spec: TFDS catalog docs/catalog/berkeley_fanuc_manipulation.md: matches, 0.1.0 (state[6]:
    # 'gripper open status'; Octo/OpenVLA invert it as 1 = closed).
    "berkeley_fanuc_manipulation": ("0.1.0", externally(
        "f32[6]", {"end_effector_state": "f32[7]", "image": "png[224,224,3]", "state": "f32[13]",
                   "wrist_image": "png[224,224,3]"}),
        {"observation/state": with_gripper(13, 6, 0, 1)},
        lambda s: col(s["action"], invert(s["observation/state"][:, 6])), slice(None)),
    # Spec: TFDS catalog docs/catalog/cmu_stretch.md: matches, 0.1.0 (action: ee pos, ee rot,
    # binary gripper, terminate).
    "cmu_stretch": ("0.1.0", externally(
        "f32[8]", {"image": "png[128,128,3]", "state": "f32[4]"}), {},
        lambda s: col(s["action"][:, :7]), slice(None)),
    # --- the rest of Octo's list whose action is an end-effector delta (README "Other Open-X
    # datasets"). Octo passes the gripper of nyu_rot, maniskill and stanford_mask_vit (and pusht's
    # relative command) through raw; the expectations convert it as the catalog documents it.
    # Image encodings the catalog does not state are png (the RLDS builder's).
    "columbia_cairlab_pusht_real": ("0.1.0", {"steps": {**FLAGS, "action": {
        **OXE_ACTION, "gripper_closedness_action": "f32"}, "observation": {
        **OXE_TEXT, "image": "png[240,320,3]", "robot_state": "f32[2]",
        "wrist_image": "png[240,320,3]"}}},
        {"action/gripper_closedness_action": lambda rng, e, T: relative_commands(rng, e, T)[:, 0]},
        lambda s: col(s["action/world_vector"], s["action/rotation_delta"],
                      rel2abs(s["action/gripper_closedness_action"])), slice(None)),
    "nyu_rot_dataset_converted_externally_to_rlds": ("0.1.0", externally(
        "f32[7]", {"image": "png[84,84,3]", "state": "f32[7]"}),
        {"action": with_gripper(7, 6, 0, 1)},
        lambda s: col(s["action"][:, :6], invert(s["action"][:, 6])), slice(None)),
    "maniskill_dataset_converted_externally_to_rlds": ("0.1.0", {"steps": {
        **RLDS, "action": "f32[7]", "observation": {
            "base_pose": "f32[7]", "depth": "png16[256,256,1]", "image": "png[256,256,3]",
            "main_camera_cam2world_gl": "f32[4,4]", "main_camera_extrinsic_cv": "f32[4,4]",
            "main_camera_intrinsic_cv": "f32[3,3]", "state": "f32[18]",
            "target_object_or_part_final_pose": "f32[7]",
            "target_object_or_part_final_pose_valid": "u8[7]",
            "target_object_or_part_initial_pose": "f32[7]",
            "target_object_or_part_initial_pose_valid": "u8[7]", "tcp_pose": "f32[7]",
            "wrist_camera_cam2world_gl": "f32[4,4]", "wrist_camera_extrinsic_cv": "f32[4,4]",
            "wrist_camera_intrinsic_cv": "f32[3,3]", "wrist_depth": "png16[256,256,1]",
            "wrist_image": "png[256,256,3]"}},
        "episode_metadata": {"episode_id": "text", "file_path": "text"}},
        {"action": with_gripper(7, 6, -1, 1)},
        lambda s: col(s["action"][:, :6], clip01(s["action"][:, 6])), slice(None)),
    "ucsd_pick_and_place_dataset_converted_externally_to_rlds": ("0.1.0", {"steps": {
        **RLDS, "action": "f32[4]", "observation": {"image": "png[224,224,3]", "state": "f32[7]"}},
        "episode_metadata": {"disclaimer": "text", "file_path": "text", "n_transitions": "i32",
                             "success": "bool", "success_labeled_by": "text"}}, {},
        lambda s: col(s["action"][:, :3], zeros(s, 3), s["action"][:, 3]), slice(None)),
    "kaist_nonprehensile_converted_externally_to_rlds": ("0.1.0", externally(
        "f32[20]", {"image": "png[480,640,3]", "partial_pointcloud": "f32[512,3]",
                    "state": "f32[21]"}), {},
        lambda s: col(s["action"][:, :6], zeros(s, 1)), slice(None)),
    "stanford_mask_vit_converted_externally_to_rlds": ("0.1.0", externally(
        "f32[5]", {"end_effector_pose": "f32[5]", "finger_sensors": "f32[1]",
                   "high_bound": "f32[5]", "image": "png[480,480,3]", "low_bound": "f32[5]",
                   "state": "f32[15]"}),
        {"action": with_gripper(5, 4, -1, 1)},
        lambda s: col(s["action"][:, :4], zeros(s, 2), invert(clip01(s["action"][:, 4]))),
        slice(None)),
    "stanford_robocook_converted_externally_to_rlds": ("0.1.0", {"steps": {
        **RLDS, "action": "f32[7]", "observation": {
            **{f"depth_{i}": "f32[256,256]" for i in range(1, 5)},
            **{f"image_{i}": "png[256,256,3]" for i in range(1, 5)}, "state": "f32[7]"}},
        "episode_metadata": {**{f"extrinsics_{i}": "f32[4,4]" for i in range(1, 5)},
                             "file_path": "text"}}, {},
        lambda s: col(s["action"]), slice(None)),
    "imperialcollege_sawyer_wrist_cam": ("0.1.0", externally(
        "f32[8]", {"image": "png[64,64,3]", "state": "f32[1]", "wrist_image": "png[64,64,3]"}), {},
        lambda s: col(s["action"][:, :7]), slice(None)),
    "uiuc_d3field": ("0.1.0", externally(
        "f32[3]", {**{f"depth_{i}": "png16[360,640,1]" for i in range(1, 5)},
                   **{f"image_{i}": "png[360,640,3]" for i in range(1, 5)}, "state": "f32[4,4]"}),
        {}, lambda s: col(s["action"], zeros(s, 4)), slice(None)),
    "dobbe": ("0.0.1", {"steps": {
        **FLAGS, "action": "f32[7]", "discount": "f32", "language_embedding": "f32[512]",
        "language_instruction": "str", "observation": {
            "gripper": "f32[1]", "quat": "f32[4]", "rot": "f32[3]", "state": "f32[7]",
            "wrist_image": "png[256,256,3]", "xyz": "f32[3]"}},
        "episode_metadata": {"file_path": "str"}}, {},
        lambda s: col(s["action"]), slice(None)),
    "fmb": ("0.0.1", {"steps": {
        **FLAGS, "action": "f32[7]", "discount": "f32", "language_embedding": "f32[512]",
        "language_instruction": "str", "observation": {
            "color_id": "u8", "eef_force": "f32[3]", "eef_pose": "f32[7]", "eef_torque": "f32[3]",
            "eef_vel": "f32[6]", **{f"image_{v}": "png[256,256,3]" for v in FMB_VIEWS},
            **{f"image_{v}_depth": "f32[256,256]" for v in FMB_VIEWS}, "joint_pos": "f32[7]",
            "joint_vel": "f32[7]", "length": "str", "object_id": "u8", "primitive": "str",
            "shape_id": "u8", "size": "str", "state_gripper_pose": "f32"}},
        "episode_metadata": {"episode_language_embedding": "f32[512]",
                             "episode_language_instruction": "str", "episode_task": "str",
                             "file_path": "str"}}, {},
        lambda s: col(s["action"]), slice(None)),
}

OTHER_EEF = ["columbia_cairlab_pusht_real", "nyu_rot_dataset_converted_externally_to_rlds",
             "maniskill_dataset_converted_externally_to_rlds",
             "ucsd_pick_and_place_dataset_converted_externally_to_rlds",
             "kaist_nonprehensile_converted_externally_to_rlds",
             "stanford_mask_vit_converted_externally_to_rlds",
             "stanford_robocook_converted_externally_to_rlds", "imperialcollege_sawyer_wrist_cam",
             "uiuc_d3field", "dobbe", "fmb"]
MAGIC_SOUP = sorted(set(DATASETS) - set(OTHER_EEF))


def instruction_of(config, values: dict[str, Any]) -> str:
    value = values[config.instruction_key][0]
    if isinstance(value, np.ndarray):
        return "".join(map(chr, value[value > 0]))
    return value


@pytest.fixture(scope="module")
def mocks(tmp_path_factory) -> Callable[[str], tuple]:
    """name → (directory, episodes) of its mock, written on first use (the quick tier's test
    needs one of them)."""
    root = tmp_path_factory.mktemp("oxe")
    written: dict[str, tuple] = {}

    def mock(name: str) -> tuple:
        if name not in written:
            version, spec, overrides, _, _ = DATASETS[name]
            written[name] = write_mock(root, name, version, spec, overrides,
                                       seed=sorted(DATASETS).index(name))
        return written[name]
    return mock


def test_magic_soup_is_octos_list():
    assert len(MAGIC_SOUP) == 25
    for name in MAGIC_SOUP:
        config = load_config(name)
        assert config.name == name and config.fps and config.license and config.source == \
            f"gs://gresearch/robotics/{name}/{DATASETS[name][0]}"


@pytest.mark.e2e   # 36 in-process builds: a whole command each
@pytest.mark.parametrize("name", sorted(DATASETS))
def test_mock_builds_with_published_actions(name, mocks, tmp_path):
    directory, episodes = mocks(name)
    config = load_config(name)
    assert armdata("configs", "--check", directory) == 0     # the config's keys exist
    out = tmp_path / "out"
    assert build("--config", name, "--source", directory, "--output", out,
                 "--stages", "actions") == 0
    assert rejected(out) == []
    rows = read_rows(out)
    expect, kept = DATASETS[name][3], DATASETS[name][4]
    by_instruction = {instruction_of(config, values): values for values in episodes}
    assert len(by_instruction) == 3
    seen = 0
    for values in episodes:
        instruction = instruction_of(config, values)
        ep_rows = sorted((r for r in rows if r["instruction"] == instruction),
                         key=lambda r: r["step"])
        steps = list(range(10))[kept]
        assert [r["step"] for r in ep_rows] == steps
        np.testing.assert_allclose(np.array([r["action"] for r in ep_rows]), expect(values),
                                   atol=2e-6, err_msg=name)
        for r, t in zip(ep_rows, steps):
            assert r["image"]["bytes"] == values[config.image_key][t]
            if config.wrist_image_key:
                assert r["wrist_image"]["bytes"] == values[config.wrist_image_key][t]
            else:
                assert r["wrist_image"] is None
        seen += len(ep_rows)
    assert seen == len(rows)
    stats = json.loads((out / "dataset_statistics.json").read_text())[name]
    assert stats["num_trajectories"] == 3 and stats["config_version"] == config.version


def test_check_reports_arm_positions_that_only_trace_needs(mocks, capsys):
    """language_table's state is 2-d (x, y): its actions build (above), `configs --check` says
    the trace and reasoning stages cannot use it (a trace build is refused: test_safety)."""
    source = mocks("language_table")[0]
    capsys.readouterr()     # what writing the mock printed
    assert armdata("configs", "--check", source, "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["arm_positions"].startswith("unusable for --stages trace/reasoning")
    assert "xyz_indices [0, 1, 2]" in report["arm_positions"]


# --- the rest of Octo's OXE_DATASET_CONFIGS ---------------------------------------------------

# Octo's dataset names (octo/data/oxe/oxe_dataset_configs.py) → the bundled config; where the
# public copy on gs://gresearch/robotics has another name, the config takes the public one.
OCTO_NAMES = {**{n: n for n in [
    "fractal20220817_data", "kuka", "bridge_dataset", "taco_play", "jaco_play",
    "berkeley_cable_routing", "roboturk", "nyu_door_opening_surprising_effectiveness", "viola",
    "berkeley_autolab_ur5", "toto", "language_table", "columbia_cairlab_pusht_real",
    "stanford_kuka_multimodal_dataset_converted_externally_to_rlds",
    "nyu_rot_dataset_converted_externally_to_rlds",
    "stanford_hydra_dataset_converted_externally_to_rlds",
    "austin_buds_dataset_converted_externally_to_rlds",
    "nyu_franka_play_dataset_converted_externally_to_rlds",
    "maniskill_dataset_converted_externally_to_rlds",
    "furniture_bench_dataset_converted_externally_to_rlds",
    "cmu_franka_exploration_dataset_converted_externally_to_rlds",
    "ucsd_kitchen_dataset_converted_externally_to_rlds",
    "ucsd_pick_and_place_dataset_converted_externally_to_rlds",
    "austin_sailor_dataset_converted_externally_to_rlds",
    "austin_sirius_dataset_converted_externally_to_rlds", "bc_z",
    "utokyo_pr2_opening_fridge_converted_externally_to_rlds",
    "utokyo_pr2_tabletop_manipulation_converted_externally_to_rlds",
    "utokyo_xarm_pick_and_place_converted_externally_to_rlds",
    "utokyo_xarm_bimanual_converted_externally_to_rlds", "robo_net",
    "berkeley_mvp_converted_externally_to_rlds", "berkeley_rpt_converted_externally_to_rlds",
    "kaist_nonprehensile_converted_externally_to_rlds",
    "stanford_mask_vit_converted_externally_to_rlds", "tokyo_u_lsmo_converted_externally_to_rlds",
    "dlr_sara_pour_converted_externally_to_rlds", "dlr_sara_grid_clamp_converted_externally_to_rlds",
    "dlr_edan_shared_control_converted_externally_to_rlds",
    "asu_table_top_converted_externally_to_rlds", "stanford_robocook_converted_externally_to_rlds",
    "imperialcollege_sawyer_wrist_cam", "iamlab_cmu_pickup_insert_converted_externally_to_rlds",
    "uiuc_d3field", "utaustin_mutex", "berkeley_fanuc_manipulation", "cmu_playing_with_food",
    "cmu_play_fusion", "cmu_stretch", "gnm_dataset", "aloha_static_dataset",
    "aloha_dagger_dataset", "dobbe", "rh20t", "mujoco_manip"]},
    "aloha_mobile_dataset": "aloha_mobile", "fmb_dataset": "fmb", "roboset": "robo_set"}

# Refused, each with its reason (README "Other Open-X datasets").
UNSUPPORTED = sorted({
    "stanford_kuka_multimodal_dataset_converted_externally_to_rlds",
    "cmu_franka_exploration_dataset_converted_externally_to_rlds",
    "utokyo_pr2_opening_fridge_converted_externally_to_rlds",
    "utokyo_pr2_tabletop_manipulation_converted_externally_to_rlds",
    "utokyo_xarm_pick_and_place_converted_externally_to_rlds",
    "utokyo_xarm_bimanual_converted_externally_to_rlds", "tokyo_u_lsmo_converted_externally_to_rlds",
    "dlr_sara_pour_converted_externally_to_rlds", "dlr_sara_grid_clamp_converted_externally_to_rlds",
    "asu_table_top_converted_externally_to_rlds", "cmu_play_fusion", "cmu_playing_with_food",
    "berkeley_mvp_converted_externally_to_rlds", "berkeley_rpt_converted_externally_to_rlds",
    "gnm_dataset", "aloha_static_dataset", "aloha_dagger_dataset", "aloha_mobile", "robo_set",
    "rh20t", "mujoco_manip"})
NO_FPS = {"stanford_mask_vit_converted_externally_to_rlds", "gnm_dataset", "rh20t", "mujoco_manip"}
NOT_ON_GCS = {"cmu_playing_with_food", "gnm_dataset", "aloha_static_dataset",
              "aloha_dagger_dataset", "rh20t", "mujoco_manip"}   # Octo's own copies


def test_every_dataset_of_octos_list_has_a_config():
    from armdata.schemas.config import available_configs

    assert len(OCTO_NAMES) == 58 and set(OCTO_NAMES.values()) <= set(available_configs())
    refused = {n for n in OCTO_NAMES.values() if load_config(n).action_space == "unsupported"}
    assert sorted(refused) == UNSUPPORTED
    built_from_mocks = set(DATASETS) | {"bridge_dataset", "robo_net"}
    assert set(OCTO_NAMES.values()) - refused <= built_from_mocks


@pytest.mark.parametrize("name", sorted(set(OCTO_NAMES.values()) - set(MAGIC_SOUP)))
def test_other_configs_name_fps_licence_and_source(name):
    config = load_config(name)
    assert config.name == name and config.description
    assert (config.fps is None) == (name in NO_FPS)
    assert (config.license is None) == (config.source is None) == (name in NOT_ON_GCS)
    if name in DATASETS:
        assert config.source == f"gs://gresearch/robotics/{name}/{DATASETS[name][0]}"
    if config.action_space == "unsupported":
        assert config.unsupported_reason and "\n" not in config.unsupported_reason


@pytest.mark.parametrize("name", UNSUPPORTED)
def test_build_refuses_unsupported_dataset_in_one_line(name, tmp_path, capsys):
    config = load_config(name)
    out = tmp_path / "out"
    assert build("--config", name, "--source", tmp_path / name / "0.1.0", "--output", out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"armdata build: error: config {name!r}: unsupported action space: "
                   f"{config.unsupported_reason}"]
    assert not out.exists()


def test_robo_net_conversion_is_octos():
    """robo_net has no TFDS catalog page (so no spec-exact mock): its config's conversion is
    checked on arrays against Octo's robo_net transform, [a[:4], 0, 0, a[-1]]."""
    from armdata.transforms.standardize import FUNCTIONS

    config = load_config("robo_net")
    action = np.random.default_rng(0).normal(size=(6, 5)).astype(np.float32)
    actions, keep = FUNCTIONS[config.standardize]({"action": action}, config.options,
                                                  config.action_key)
    np.testing.assert_allclose(actions, col(action[:, :4], np.zeros((6, 2)), action[:, -1]))
    assert keep.tolist() == list(range(6))
