"""Check a dataset config's keys against the source's `features.json` before any Beam work, so a
typo (`image_key: observation/img`) fails in one line naming the key and the keys that exist,
instead of rejecting every episode."""
from __future__ import annotations

import json
import logging
from typing import Any, Iterator

import numpy as np

from armdata.pipeline.sinks import storage
from armdata.schemas.config import ConfigError, DatasetConfig

log = logging.getLogger(__name__)

STEPS, METADATA = "steps/", "episode_metadata/"


def feature_leaves(node: dict[str, Any], prefix: str = ""
                   ) -> Iterator[tuple[str, dict[str, Any]]]:
    """(key, serialized feature) of every leaf of a serialized tfds FeaturesDict, keys joined with
    '/' (sequences such as `steps` are transparent: their per-element keys follow the sequence's
    name)."""
    if "featuresDict" in node:
        for key, child in node["featuresDict"]["features"].items():
            yield from feature_leaves(child, f"{prefix}{key}/")
    elif "sequence" in node:
        yield from feature_leaves(node["sequence"]["feature"], prefix)
    else:
        yield prefix.rstrip("/"), node


def source_features(directory: str) -> dict[str, dict[str, Any]] | None:
    """Every leaf feature of the source (e.g. `steps/observation/image_0`) by key, or None when the
    source has no readable features.json (older TFDS versions)."""
    path = storage.join(directory, "features.json")
    try:
        return dict(feature_leaves(json.loads(storage.read_bytes(path))))
    except Exception as exc:  # absent or unreadable: reading will find out about the data
        log.warning("cannot check the config's keys against %s (%s)", path, exc)
        return None


def flat_width(feature: dict[str, Any]) -> int | None:
    """Values per step of a tensor feature once its trailing dims are flattened (as
    `step_field` does), None when it is not a tensor of a fixed shape."""
    dims = feature.get("tensor", {}).get("shape", {}).get("dimensions", [])
    if "tensor" not in feature or not all(str(d).isdigit() for d in dims):
        return None
    return int(np.prod([int(d) for d in dims]))


def config_keys(config: DatasetConfig) -> dict[str, str]:
    """Config field → the source key it names (step keys under `steps/`)."""
    keys = {field: getattr(config, field) for field in (
        "image_key", "wrist_image_key", "instruction_key", "state_key", "depth_key",
        "action_key")}
    out = {field: STEPS + key for field, key in keys.items() if key}
    for i, key in enumerate(config.options.get("action_keys") or []):
        out[f"options.action_keys[{i}]"] = STEPS + key
    if config.camera is not None:
        for field in ("intrinsics", "extrinsics"):
            value = getattr(config.camera, field)
            if isinstance(value, str):
                out[f"camera.{field}"] = value
    return out


def check_config_keys(config: DatasetConfig, directory: str, arm_positions: bool = True) -> None:
    """Raise ConfigError naming the first config key the source does not have (a key names a
    feature or a group of them: `action` for `action/world_vector`, ...), or, where the stages
    read the arms' positions (`arm_positions`: trace, reasoning), an arm whose xyz_indices lie
    outside the state (which would make every trace null)."""
    features = source_features(directory)
    if features is None:
        return
    keys = sorted(features)
    for field, key in config_keys(config).items():
        if any(k == key or k.startswith(key + "/") for k in keys):
            continue
        group = STEPS if key.startswith(STEPS) else METADATA
        present = [k[len(group):] for k in keys if k.startswith(group)]
        raise ConfigError(f"config {config.name!r}: {field} {key[len(group):]!r} is not a "
                          f"{group.rstrip('/')} key of {directory}; it has: "
                          f"{', '.join(present) or 'none'}")
    state = features.get(STEPS + config.state_key) if config.state_key else None
    width = flat_width(state) if state is not None else None
    for i, arm in enumerate(config.arms if arm_positions else ()):
        if width is not None and max(arm.xyz_indices) >= width:
            raise ConfigError(f"config {config.name!r}: arms[{i}].xyz_indices "
                              f"{list(arm.xyz_indices)} are outside state_key "
                              f"{config.state_key!r} of {directory}, which has {width} values "
                              f"per step")
