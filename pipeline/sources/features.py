"""Check a dataset config's keys against the source's `features.json` before any Beam work, so a
typo (`image_key: observation/img`) fails in one line naming the key and the keys that exist,
instead of rejecting every episode."""
from __future__ import annotations

import json
import logging
from typing import Any, Iterator

from armdata.pipeline.sinks import storage
from armdata.schemas.config import ConfigError, DatasetConfig

log = logging.getLogger(__name__)

STEPS, METADATA = "steps/", "episode_metadata/"


def feature_keys(node: dict[str, Any], prefix: str = "") -> Iterator[str]:
    """Leaf feature keys of a serialized tfds FeaturesDict, joined with '/' (sequences such as
    `steps` are transparent: their per-element keys follow the sequence's name)."""
    if "featuresDict" in node:
        for key, child in node["featuresDict"]["features"].items():
            yield from feature_keys(child, f"{prefix}{key}/")
    elif "sequence" in node:
        yield from feature_keys(node["sequence"]["feature"], prefix)
    else:
        yield prefix.rstrip("/")


def source_keys(directory: str) -> list[str] | None:
    """Every leaf key of the source's features (e.g. `steps/observation/image_0`), or None when
    the source has no readable features.json (older TFDS versions)."""
    path = storage.join(directory, "features.json")
    try:
        return sorted(feature_keys(json.loads(storage.read_bytes(path))))
    except Exception as exc:  # absent or unreadable: reading will find out about the data
        log.warning("cannot check the config's keys against %s (%s)", path, exc)
        return None


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


def check_config_keys(config: DatasetConfig, directory: str) -> None:
    """Raise ConfigError naming the first config key the source does not have. A key names a
    feature or a group of them (`action` for `action/world_vector`, ...)."""
    keys = source_keys(directory)
    if keys is None:
        return
    for field, key in config_keys(config).items():
        if any(k == key or k.startswith(key + "/") for k in keys):
            continue
        group = STEPS if key.startswith(STEPS) else METADATA
        present = [k[len(group):] for k in keys if k.startswith(group)]
        raise ConfigError(f"config {config.name!r}: {field} {key[len(group):]!r} is not a "
                          f"{group.rstrip('/')} key of {directory}; it has: "
                          f"{', '.join(present) or 'none'}")
