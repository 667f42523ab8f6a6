"""Dataset configs: one YAML per source dataset in `configs/`, validated with clear messages.

A config names where each canonical field lives in the source's (flattened, `/`-joined) step and
episode-metadata keys, and which standardization function in `armdata.transforms.standardize` turns the
source's actions into the canonical 7-d form. See README "Dataset configs" for every field.
"""
from __future__ import annotations

import hashlib
import importlib.resources
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

CONFIG_DIR = importlib.resources.files("armdata.configs")   # bundled YAML, installed as package data
DEFAULT_MASK = [True] * 6 + [False]


class ConfigError(ValueError):
    """A config file is missing, malformed or inconsistent."""


@dataclass(frozen=True)
class CameraConfig:
    """Pinhole camera for the primary image. Each matrix is given inline or as an
    `episode_metadata/...` key holding it per episode."""
    intrinsics: Any = None           # 3x3 list, or a metadata key string
    extrinsics: Any = None           # 4x4 world->camera list, or a metadata key string


@dataclass(frozen=True)
class ArmConfig:
    name: str = "arm"
    xyz_indices: tuple[int, int, int] = (0, 1, 2)   # where the end-effector position is in `state`


MOTION_WORD_KEYS = ("x", "y", "z", "tilt", "yaw", "gripper")
DEFAULT_MOTION_WORDS = {"x": ("forward", "backward"), "y": ("left", "right"), "z": ("up", "down"),
                        "tilt": ("tilt up", "tilt down"),
                        "yaw": ("rotate counterclockwise", "rotate clockwise"),
                        "gripper": ("open gripper", "close gripper")}


@dataclass(frozen=True)
class MotionConfig:
    """Language-motion rule of SPEC §7 (ECoT), in this robot's units; defaults are Bridge's
    (metres, radians). `words` maps each axis to its (positive, negative) words."""
    state_indices: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6)   # x y z roll pitch yaw gripper in state
    window: int = 3                  # steps ahead (by source step index)
    translation_norm: float = 0.09   # L1 norm xyz is rescaled to when larger
    rotation_divisor: float = 10.0   # roll/pitch/yaw are divided by this
    threshold: float = 0.03          # |component| beyond this counts as a motion
    words: tuple[tuple[str, tuple[str, str]], ...] = tuple(DEFAULT_MOTION_WORDS.items())

    def word(self, axis: str, sign: int) -> str:
        return dict(self.words)[axis][0 if sign > 0 else 1]


@dataclass(frozen=True)
class DatasetConfig:
    name: str
    standardize: str
    image_key: str
    instruction_key: str | None = None
    wrist_image_key: str | None = None
    state_key: str | None = None
    action_key: str = "action"
    depth_key: str | None = None       # sensor depth (step key), for --depth-source sensor
    depth_scale: float = 1.0           # multiply the stored depth by this to get metres
    require_instruction: bool = True
    rotate_180: bool = False           # the source stores frames upside down: turn them upright
    action_mask: tuple[bool, ...] = tuple(DEFAULT_MASK)
    options: dict[str, Any] = field(default_factory=dict)   # passed to the standardize function
    camera: CameraConfig | None = None
    arms: tuple[ArmConfig, ...] = (ArmConfig(),)
    motion: MotionConfig = MotionConfig()
    description: str = ""
    version: int = 1                   # bumped when the conversion changes (statistics record it)
    fps: float | None = None           # the robot's control rate, Hz
    license: str | None = None         # the source data's licence (SPDX-style id)
    source: str | None = None          # where the data is published, e.g. gs://.../<name>/<version>
    action_space: str = "ee_delta"     # "unsupported": a build refuses, naming unsupported_reason
    unsupported_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def hash(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


def available_configs() -> list[str]:
    return sorted(p.name[:-len(".yaml")] for p in CONFIG_DIR.iterdir() if p.name.endswith(".yaml"))


def load_config(name_or_path: str) -> DatasetConfig:
    """Load a config by bundled name (`bridge_dataset`) or by path to a YAML file."""
    path = Path(name_or_path)
    if not (name_or_path.endswith((".yaml", ".yml")) or os.sep in name_or_path):
        path = CONFIG_DIR / f"{name_or_path}.yaml"
        if not path.is_file():
            raise ConfigError(f"unknown config {name_or_path!r}; bundled configs: "
                              f"{', '.join(available_configs())}, or pass a path to a YAML file")
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    return parse_config(raw, source=str(path))


def parse_config(raw: Any, source: str = "<config>") -> DatasetConfig:
    from armdata.transforms import standardize  # the registry of per-dataset functions

    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping at top level, got {type(raw).__name__}")
    known = set(DatasetConfig.__dataclass_fields__)
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{source}: unknown field(s) {unknown}; allowed: {sorted(known)}")
    for req in ("name", "standardize", "image_key"):
        if not raw.get(req):
            raise ConfigError(f"{source}: missing required field {req!r}")
    values = dict(raw)
    if values["standardize"] not in standardize.FUNCTIONS:
        raise ConfigError(f"{source}: standardize {values['standardize']!r} is not one of "
                          f"{sorted(standardize.FUNCTIONS)}")
    for key in ("name", "standardize", "image_key", "instruction_key", "wrist_image_key",
                "state_key", "action_key", "depth_key", "description", "license", "source",
                "unsupported_reason"):
        if values.get(key) is not None and not isinstance(values[key], str):
            raise ConfigError(f"{source}: {key} must be a string, got {values[key]!r}")
    mask = values.get("action_mask", DEFAULT_MASK)
    if not (isinstance(mask, list) and len(mask) == 7 and all(isinstance(m, bool) for m in mask)):
        raise ConfigError(f"{source}: action_mask must be a list of 7 booleans, got {mask!r}")
    values["action_mask"] = tuple(mask)
    if not isinstance(values.get("options", {}), dict):
        raise ConfigError(f"{source}: options must be a mapping")
    for flag in ("require_instruction", "rotate_180"):
        if flag in values and not isinstance(values[flag], bool):
            raise ConfigError(f"{source}: {flag} must be true or false")
    if values.get("require_instruction", True) and not values.get("instruction_key"):
        raise ConfigError(f"{source}: require_instruction is true but no instruction_key is set")
    _check_provenance(values, source)
    if not isinstance(values.get("depth_scale", 1.0), (int, float)):
        raise ConfigError(f"{source}: depth_scale must be a number")
    if values.get("camera") is not None:
        cam = values["camera"]
        if not isinstance(cam, dict) or set(cam) - {"intrinsics", "extrinsics"}:
            raise ConfigError(f"{source}: camera must be a mapping with intrinsics and extrinsics")
        _check_matrix(cam.get("intrinsics"), (3, 3), f"{source}: camera.intrinsics")
        _check_matrix(cam.get("extrinsics"), (4, 4), f"{source}: camera.extrinsics")
        values["camera"] = CameraConfig(**cam)
    arms = values.get("arms", [{}])
    if not isinstance(arms, list) or not arms:
        raise ConfigError(f"{source}: arms must be a non-empty list")
    parsed_arms = []
    for i, arm in enumerate(arms):
        if not isinstance(arm, dict) or set(arm) - {"name", "xyz_indices"}:
            raise ConfigError(f"{source}: arms[{i}] must be a mapping with name and xyz_indices")
        idx = arm.get("xyz_indices", (0, 1, 2))
        if not isinstance(idx, (list, tuple)) or len(idx) != 3 or not all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in idx):
            raise ConfigError(f"{source}: arms[{i}].xyz_indices must be 3 non-negative ints")
        name = arm.get("name", f"arm{i}")
        if not isinstance(name, str):
            raise ConfigError(f"{source}: arms[{i}].name must be a string")
        if name in [a.name for a in parsed_arms]:   # manual points, traces, exports key by name
            raise ConfigError(f"{source}: arms[{i}].name {name!r} is used by an earlier arm")
        parsed_arms.append(ArmConfig(name=name, xyz_indices=tuple(idx)))
    values["arms"] = tuple(parsed_arms)
    values["motion"] = parse_motion(values.get("motion", {}), f"{source}: motion")
    try:
        standardize.FUNCTIONS[values["standardize"]].check_options(values.get("options", {}))
    except ValueError as exc:
        raise ConfigError(f"{source}: options: {exc}") from exc
    return DatasetConfig(**values)


ACTION_SPACES = ("ee_delta", "unsupported")


def _check_provenance(values: dict[str, Any], source: str) -> None:
    """version, fps, action_space (+ unsupported_reason): types and consistency."""
    version = values.get("version", 1)
    if not (isinstance(version, int) and not isinstance(version, bool) and version >= 1):
        raise ConfigError(f"{source}: version must be an int >= 1, got {version!r}")
    fps = values.get("fps")
    if fps is not None and not (isinstance(fps, (int, float)) and not isinstance(fps, bool)
                                and fps > 0):
        raise ConfigError(f"{source}: fps must be a positive number (Hz), got {fps!r}")
    space = values.get("action_space", "ee_delta")
    if space not in ACTION_SPACES:
        raise ConfigError(f"{source}: action_space must be one of {list(ACTION_SPACES)}, "
                          f"got {space!r}")
    if (space == "unsupported") != bool(values.get("unsupported_reason")):
        raise ConfigError(f"{source}: unsupported_reason is required with (and only with) "
                          f"action_space: unsupported")


def parse_motion(raw: Any, what: str) -> MotionConfig:
    """The `motion:` mapping of a config (every field optional, Bridge's values by default)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{what} must be a mapping")
    unknown = sorted(set(raw) - set(MotionConfig.__dataclass_fields__))
    if unknown:
        raise ConfigError(f"{what}: unknown field(s) {unknown}; allowed: "
                          f"{sorted(MotionConfig.__dataclass_fields__)}")
    values: dict[str, Any] = {}
    idx = raw.get("state_indices", MotionConfig.state_indices)
    if not (isinstance(idx, (list, tuple)) and len(idx) == 7
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in idx)):
        raise ConfigError(f"{what}.state_indices must be 7 non-negative ints (x, y, z, roll, "
                          f"pitch, yaw, gripper positions in the state), got {idx!r}")
    values["state_indices"] = tuple(idx)
    window = raw.get("window", MotionConfig.window)
    if not (isinstance(window, int) and not isinstance(window, bool) and window >= 1):
        raise ConfigError(f"{what}.window must be an int ≥ 1, got {window!r}")
    values["window"] = window
    for key in ("translation_norm", "rotation_divisor", "threshold"):
        v = raw.get(key, getattr(MotionConfig, key))
        if not (isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0):
            raise ConfigError(f"{what}.{key} must be a positive number, got {v!r}")
        values[key] = float(v)
    words = dict(DEFAULT_MOTION_WORDS)
    given = raw.get("words", {})
    if not isinstance(given, dict) or set(given) - set(MOTION_WORD_KEYS):
        raise ConfigError(f"{what}.words must be a mapping with keys among {MOTION_WORD_KEYS}")
    for axis, pair in given.items():
        if not (isinstance(pair, list) and len(pair) == 2
                and all(isinstance(w, str) and w.strip() for w in pair)):
            raise ConfigError(f"{what}.words.{axis} must be [positive word, negative word]")
        words[axis] = tuple(pair)
    values["words"] = tuple((k, tuple(words[k])) for k in MOTION_WORD_KEYS)
    return MotionConfig(**values)


def _check_matrix(value: Any, shape: tuple[int, int], what: str) -> None:
    if value is None:
        raise ConfigError(f"{what} is missing")
    if isinstance(value, str):
        if not value.startswith("episode_metadata/"):
            raise ConfigError(f"{what}: a key must start with 'episode_metadata/', got {value!r}")
        return
    rows = value if isinstance(value, list) else None
    if rows is None or len(rows) != shape[0] or any(
            not isinstance(r, list) or len(r) != shape[1] for r in rows):
        raise ConfigError(f"{what} must be a {shape[0]}x{shape[1]} list of numbers "
                          f"or an episode_metadata key")
