"""Per-dataset standardization: a source episode's flattened fields → the canonical `Episode`.

Each dataset gets one short pure function (registered in `FUNCTIONS` under the name a config's
`standardize` field uses) that turns the source's step fields into canonical 7-d actions
`[dx, dy, dz, droll, dpitch, dyaw, gripper]` with gripper 1 = open, 0 = closed (SPEC §4/§5), and
says which source steps it keeps. `standardize_episode` does the dataset-independent rest: images,
instruction, state, flags, sensor depth and metadata, following the `DatasetConfig`.

`steps` everywhere is a dict of one episode's step fields flattened with '/' (e.g. `action`,
`action/world_vector`, `observation/image_0`), each an array with the episode length T first.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
from PIL import Image

from armdata.schemas.episode import DataError, Episode, Step, decode_rgb, encode_jpeg, encode_png

Steps = Mapping[str, np.ndarray]
Convert = Callable[[Steps, dict[str, Any], str], tuple[np.ndarray, np.ndarray]]
METADATA_PREFIX = "episode_metadata/"


class StandardizeError(DataError):
    """The episode does not have the fields or shapes its dataset config promises."""


# ---------------------------------------------------------------------------------------------
# Options and the registry

_REQUIRED = object()


@dataclass(frozen=True)
class Option:
    check: Callable[[str, Any], None]   # raises ValueError naming the option
    default: Any = _REQUIRED
    help: str = ""


def _is_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}")


def _is_key_list(name: str, value: Any) -> None:
    if not (isinstance(value, list) and value and all(isinstance(v, str) and v for v in value)):
        raise ValueError(f"{name} must be a non-empty list of step keys, got {value!r}")


def _one_of(*choices: str) -> Callable[[str, Any], None]:
    def check(name: str, value: Any) -> None:
        if value not in choices:
            raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return check


@dataclass(frozen=True)
class Standardizer:
    """A registered per-dataset function with the options it accepts."""
    name: str
    convert: Convert
    options: Mapping[str, Option] = field(default_factory=dict)

    def check_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """Validate `options` (raises ValueError) and return them with defaults filled in."""
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            allowed = sorted(self.options) or "none"
            raise ValueError(f"standardize {self.name!r} does not take option(s) {unknown}; "
                             f"allowed: {allowed}")
        resolved = {}
        for name, opt in self.options.items():
            if name in options:
                opt.check(name, options[name])
                resolved[name] = options[name]
            elif opt.default is _REQUIRED:
                raise ValueError(f"standardize {self.name!r} needs option {name!r} ({opt.help})")
            else:
                resolved[name] = opt.default
        return resolved

    def __call__(self, steps: Steps, options: Mapping[str, Any],
                 action_key: str = "action") -> tuple[np.ndarray, np.ndarray]:
        """Canonical actions (K, 7) float32 and the kept source step indices (K,) int64."""
        actions, keep = self.convert(steps, self.check_options(options), action_key)
        return actions.astype(np.float32), np.asarray(keep, np.int64)


FUNCTIONS: dict[str, Standardizer] = {}


def register(name: str, **options: Option) -> Callable[[Convert], Convert]:
    def add(convert: Convert) -> Convert:
        FUNCTIONS[name] = Standardizer(name, convert, options)
        return convert
    return add


# ---------------------------------------------------------------------------------------------
# Field access and gripper conventions (pure helpers)

def step_field(steps: Steps, key: str, width: int | None = None,
               min_width: int | None = None) -> np.ndarray:
    """`steps[key]` as (T, D) float32; trailing dims are flattened and a (T,) field is (T, 1)."""
    if key not in steps:
        raise StandardizeError(f"missing step key {key!r}; available: {sorted(steps)}")
    raw = np.asarray(steps[key])
    expected = f"(T, {width if width is not None else 'D'})"
    if raw.ndim == 0 or not (np.issubdtype(raw.dtype, np.number) or raw.dtype == bool):
        raise StandardizeError(f"step key {key!r}: expected numbers of shape {expected}, "
                               f"got shape {raw.shape} dtype {raw.dtype}")
    values = raw.reshape(len(raw), -1)
    if (width is not None and values.shape[1] != width) or \
            (min_width is not None and values.shape[1] < min_width):
        if min_width is not None:
            expected = f"(T, >={min_width})"
        raise StandardizeError(f"step key {key!r}: expected shape {expected}, got {raw.shape}")
    return values.astype(np.float32)


def gripper_relative_to_absolute(g: np.ndarray) -> np.ndarray:
    """Relative gripper commands (−1 open, +1 close; RT-1 and kin) → absolute 1 = open / 0 = closed.

    A command is g < −0.1 (open) or g > 0.1 (close), strictly; between commands the state holds.
    Before the first command the state is the opposite of that command (Octo/OpenVLA assume the
    first command is not redundant); with no command at all the gripper is open throughout."""
    g = np.asarray(g, np.float32).reshape(-1)
    limit = np.float32(0.1)   # compared in float32, as the published TensorFlow code does
    is_command = (g < -limit) | (g > limit)
    opens = g < -limit
    if not is_command.any():
        return np.ones(len(g), np.float32)
    last = np.where(is_command, np.arange(len(g)), -1)
    np.maximum.accumulate(last, out=last)
    before_first = not opens[np.argmax(is_command)]
    return np.where(last >= 0, opens[np.maximum(last, 0)], before_first).astype(np.float32)


def gripper_binarize(g: np.ndarray) -> np.ndarray:
    """Bridge absolute gripper (1 open … 0 closed) → {0, 1}.

    > 0.95 is open, < 0.05 closed; an in-between value (the gripper moving) takes the next settled
    value. In-between values with no settled value after them take the episode's last raw value
    (Octo's carry-back rule, so they are not binary)."""
    g = np.asarray(g, np.float32).reshape(-1)
    n = len(g)
    settled = (g > 0.95) | (g < 0.05)
    nxt = np.where(settled, np.arange(n), n)
    nxt = np.minimum.accumulate(nxt[::-1])[::-1]
    if n == 0:
        return g
    settled_open = (g > 0.95).astype(np.float32)
    return np.where(nxt < n, settled_open[np.minimum(nxt, n - 1)], g[-1]).astype(np.float32)


def gripper_minus_one_open(g: np.ndarray) -> np.ndarray:
    """Absolute gripper −1 open … +1 closed (LIBERO) → 1 − clip(g, 0, 1)."""
    return (1.0 - np.clip(np.asarray(g, np.float32).reshape(-1), 0.0, 1.0)).astype(np.float32)


def gripper_closed_is_one(g: np.ndarray) -> np.ndarray:
    """Absolute gripper 1 = closed, 0 = open (e.g. BC-Z target_close) → 1 − g."""
    return (1.0 - np.asarray(g, np.float32).reshape(-1)).astype(np.float32)


def _canonical(motion: np.ndarray, gripper: np.ndarray) -> np.ndarray:
    return np.concatenate([motion, gripper.reshape(-1, 1)], axis=1).astype(np.float32)


def _all(values: np.ndarray) -> np.ndarray:
    return np.arange(len(values), dtype=np.int64)


# ---------------------------------------------------------------------------------------------
# One function per dataset

@register("identity")
def identity(steps: Steps, options: dict[str, Any], action_key: str):
    """The action field is already canonical 7-d (the synthetic demo dataset)."""
    actions = step_field(steps, action_key, 7)
    return actions, _all(actions)


@register("fractal20220817_data")
def fractal(steps: Steps, options: dict[str, Any], action_key: str):
    """RT-1: world_vector + rotation_delta; relative gripper_closedness_action → absolute."""
    motion = np.concatenate([step_field(steps, f"{action_key}/world_vector", 3),
                             step_field(steps, f"{action_key}/rotation_delta", 3)], axis=1)
    closedness = step_field(steps, f"{action_key}/gripper_closedness_action", 1)
    return _canonical(motion, gripper_relative_to_absolute(closedness)), _all(motion)


@register("bridge_dataset", recompute_from_state=Option(
    _is_bool, True, "motion from consecutive observation/state, last step dropped (Octo, "
    "OpenVLA, ECoT); false: the raw action[:6]"))
def bridge_dataset(steps: Steps, options: dict[str, Any], action_key: str):
    """BridgeData V2 (bridge_orig): binarized gripper; drops the first step (all-zero motion);
    by default the motion is relabelled from consecutive states and the last step dropped."""
    raw = step_field(steps, action_key, 7)
    gripper = gripper_binarize(raw[:, 6])
    if options["recompute_from_state"]:
        state = step_field(steps, "observation/state", min_width=6)
        keep = np.arange(1, len(raw) - 1)
        motion = state[keep + 1, :6] - state[keep, :6]
    else:
        keep = np.arange(1, len(raw))
        motion = raw[keep, :6]
    return _canonical(motion, gripper[keep]), keep


@register("bridge")
def bridge_openx(steps: Steps, options: dict[str, Any], action_key: str):
    """Open-X bridge 0.1.0: world_vector + rotation_delta; gripper = open_gripper."""
    motion = np.concatenate([step_field(steps, f"{action_key}/world_vector", 3),
                             step_field(steps, f"{action_key}/rotation_delta", 3)], axis=1)
    gripper = step_field(steps, f"{action_key}/open_gripper", 1)
    return _canonical(motion, gripper), _all(motion)


@register("bc_z")
def bc_z(steps: Steps, options: dict[str, Any], action_key: str):
    """BC-Z: the first of the 10 future steps; gripper = 1 − target_close."""
    xyz = step_field(steps, f"{action_key}/future/xyz_residual", min_width=3)[:, :3]
    rot = step_field(steps, f"{action_key}/future/axis_angle_residual", min_width=3)[:, :3]
    close = step_field(steps, f"{action_key}/future/target_close", min_width=1)[:, 0]
    return _canonical(np.concatenate([xyz, rot], axis=1), gripper_closed_is_one(close)), _all(xyz)


@register("libero")
def libero(steps: Steps, options: dict[str, Any], action_key: str):
    """LIBERO (OpenVLA no_noops): 7-d with gripper −1 open … +1 close."""
    raw = step_field(steps, action_key, 7)
    return _canonical(raw[:, :6], gripper_minus_one_open(raw[:, 6])), _all(raw)


def gripper_minus_one_closed(g: np.ndarray) -> np.ndarray:
    """Absolute gripper −1 closed … +1 open (e.g. taco_play) → clip(g, 0, 1)."""
    return np.clip(np.asarray(g, np.float32).reshape(-1), 0.0, 1.0).astype(np.float32)


def quaternion_to_euler(q: np.ndarray) -> np.ndarray:
    """(N, 4) quaternions (x, y, z, w) → (N, 3) roll, pitch, yaw with R = Rz(yaw) Ry(pitch)
    Rx(roll), the decomposition Octo's tensorflow_graphics `euler.from_quaternion` returns."""
    x, y, z, w = (np.asarray(q, np.float64)[:, i] for i in range(4))
    roll = np.arctan2(2 * (w * x + y * z), 1 - 2 * (x * x + y * y))
    pitch = np.arcsin(np.clip(2 * (w * y - x * z), -1.0, 1.0))
    yaw = np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))
    return np.stack([roll, pitch, yaw], axis=1).astype(np.float32)


GRIPPER_CONVERSIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "open_is_one": lambda g: np.asarray(g, np.float32).reshape(-1),
    "closed_is_one": gripper_closed_is_one,
    "minus_one_open": gripper_minus_one_open,
    "minus_one_closed": gripper_minus_one_closed,
    "relative_minus_one_open": gripper_relative_to_absolute,
}
CONSTANTS = {"zero": 0.0, "one": 1.0}


def _is_layout(name: str, value: Any) -> None:
    if value is None:
        return
    if not (isinstance(value, list) and len(value) == 7 and all(
            v in CONSTANTS if isinstance(v, str) else isinstance(v, int) and
            not isinstance(v, bool) for v in value)):
        raise ValueError(f"{name} must be 7 entries, each an index into the concatenated action "
                         f"keys (negative counts from the end) or one of {list(CONSTANTS)}, "
                         f"got {value!r}")


def _is_index(name: str, value: Any) -> None:
    if value is not None and not (isinstance(value, int) and not isinstance(value, bool)
                                  and value >= 0):
        raise ValueError(f"{name} must be a non-negative int, got {value!r}")


def arrange(raw: np.ndarray, layout: list[int | str] | None) -> np.ndarray:
    """(T, D) → (T, 7): pick the layout's columns (or constants); no layout: D must be 7."""
    if layout is None:
        if raw.shape[1] != 7:
            raise StandardizeError(f"action keys give {raw.shape[1]} dims per step, expected 7 "
                                   f"(or a `layout` picking 7)")
        return raw
    columns = []
    for entry in layout:
        if isinstance(entry, str):
            columns.append(np.full(len(raw), CONSTANTS[entry], np.float32))
        elif -raw.shape[1] <= entry < raw.shape[1]:
            columns.append(raw[:, entry])
        else:
            raise StandardizeError(f"layout index {entry} is outside the {raw.shape[1]} action "
                                   f"dims per step")
    return np.stack(columns, axis=1).astype(np.float32)


@register(
    "generic",
    action_keys=Option(_is_key_list, None,
                       "step keys concatenated; default: the config's action_key"),
    layout=Option(_is_layout, None, "7 entries: an index into the concatenation, or zero/one"),
    quaternion_at=Option(_is_index, None,
                         "index of an (x, y, z, w) quaternion in the concatenation, replaced "
                         "by roll, pitch, yaw before the layout applies"),
    gripper=Option(_one_of(*GRIPPER_CONVERSIONS), help=f"one of {list(GRIPPER_CONVERSIONS)}"),
    drop_first=Option(_is_bool, False, "drop the first step"))
def generic(steps: Steps, options: dict[str, Any], action_key: str):
    """Any dataset: concatenate the named fields, optionally turn a quaternion into Euler angles,
    pick 7 dims by `layout`, convert the last one (the gripper)."""
    keys = options["action_keys"] or [action_key]
    raw = np.concatenate([step_field(steps, k) for k in keys], axis=1)
    at = options["quaternion_at"]
    if at is not None:
        if at + 4 > raw.shape[1]:
            raise StandardizeError(f"quaternion_at {at}: action keys {keys} give only "
                                   f"{raw.shape[1]} dims per step")
        raw = np.concatenate([raw[:, :at], quaternion_to_euler(raw[:, at:at + 4]),
                              raw[:, at + 4:]], axis=1)
    raw = arrange(raw, options["layout"])
    keep = np.arange(1 if options["drop_first"] else 0, len(raw))
    gripper = GRIPPER_CONVERSIONS[options["gripper"]](raw[:, 6])
    return _canonical(raw[keep, :6], gripper[keep]), keep


# ---------------------------------------------------------------------------------------------
# The whole episode

def standardize_episode(raw: Mapping[str, Any], config: Any, episode_id: str) -> Episode:
    """Build the canonical `Episode` from `{"steps": {key: array}, "episode_metadata": {...}}`.

    `config` is a `armdata.schemas.config.DatasetConfig`."""
    steps: Steps = raw["steps"]
    keys = [config.image_key, config.instruction_key, config.state_key,
            config.wrist_image_key, config.depth_key]
    missing = [k for k in keys if k is not None and k not in steps]
    if missing:
        raise StandardizeError(f"missing step key(s) {missing} named in config {config.name!r}; "
                               f"available: {sorted(steps)}")
    lengths = {k: len(v) for k, v in steps.items()}
    num_steps = lengths[config.image_key]
    if num_steps == 0:
        raise StandardizeError("episode has no steps")
    uneven = {k: n for k, n in lengths.items() if n != num_steps}
    if uneven:
        raise StandardizeError(f"step fields differ in length: {config.image_key!r} has "
                               f"{num_steps}, but {uneven}")

    actions, keep = FUNCTIONS[config.standardize](steps, config.options, config.action_key)
    if len(keep) == 0:
        raise StandardizeError(f"no steps left after standardize {config.standardize!r} "
                               f"(source has {num_steps})")

    images = _frames(steps, config.image_key, keep, config.rotate_180)
    wrist = _frames(steps, config.wrist_image_key, keep, config.rotate_180) \
        if config.wrist_image_key else [None] * len(keep)
    source_states = step_field(steps, config.state_key) if config.state_key else None
    states = source_states[keep] if source_states is not None \
        else np.zeros((len(keep), 0), np.float32)
    texts = _instructions(steps, config.instruction_key, keep)
    depth = _depth_maps(steps[config.depth_key], keep, config.depth_key, config.depth_scale) \
        if config.depth_key else [None] * len(keep)
    flags = {name: _flags(steps, name, num_steps)[keep]
             for name in ("is_first", "is_last", "is_terminal")}

    out = [Step(index=int(src), image=images[i], action=actions[i], state=states[i],
                instruction=texts[i], is_first=bool(flags["is_first"][i]),
                is_last=bool(flags["is_last"][i]), is_terminal=bool(flags["is_terminal"][i]),
                wrist_image=wrist[i], sensor_depth=depth[i])
           for i, src in enumerate(keep)]
    metadata = {k.removeprefix(METADATA_PREFIX): jsonable(v)
                for k, v in raw.get("episode_metadata", {}).items()}
    return Episode(dataset=config.name, episode_id=episode_id, num_steps=num_steps,
                   steps=out, metadata=metadata, source_states=source_states)


def _frames(steps: Steps, key: str, keep: np.ndarray, rotate: bool) -> list[bytes]:
    """Encoded frames of the kept steps. Stored pixel arrays (T, H, W, 3) are PNG-encoded."""
    value = steps[key]
    if isinstance(value, np.ndarray) and value.dtype == np.uint8 and value.ndim == 4:
        frames = [encode_png(value[i]) for i in keep]
    else:
        frames = [value[i] for i in keep]
        bad = [i for i, f in zip(keep, frames) if not isinstance(f, (bytes, bytearray))]
        if bad:
            raise StandardizeError(f"step key {key!r}: expected encoded image bytes or uint8 "
                                   f"(T, H, W, 3) pixels, got {type(frames[0]).__name__} "
                                   f"(shape {np.shape(value)}) at steps {bad[:5]}")
        frames = [bytes(f) for f in frames]
    if not rotate:
        return frames
    try:
        return [encode_jpeg(np.ascontiguousarray(decode_rgb(f)[::-1, ::-1]), quality=95)
                for f in frames]
    except DataError as exc:
        raise StandardizeError(f"step key {key!r}: cannot rotate frame: {exc}") from exc


def _instructions(steps: Steps, key: str | None, keep: np.ndarray) -> list[str]:
    if key is None:
        return [""] * len(keep)
    out = []
    for i in keep:
        value = steps[key][i]
        if isinstance(value, np.ndarray) and np.issubdtype(value.dtype, np.integer):
            value = _code_points(value, key, i)
        if isinstance(value, (bytes, bytearray, np.bytes_)):
            try:
                value = bytes(value).decode("utf-8")
            except UnicodeDecodeError as exc:
                raise StandardizeError(f"step key {key!r} step {i}: not UTF-8 text: {exc}") from exc
        elif not isinstance(value, str):
            raise StandardizeError(f"step key {key!r}: expected text per step, got "
                                   f"{type(value).__name__} (shape {np.shape(steps[key])})")
        out.append(str(value))
    return out


def _code_points(value: np.ndarray, key: str, step: int) -> str:
    """Text stored as zero-padded Unicode code points (language_table's int32 (512,))."""
    points = value.reshape(-1)
    end = np.flatnonzero(points == 0)
    points = points[:end[0]] if len(end) else points
    try:
        return "".join(map(chr, points.tolist()))
    except (ValueError, OverflowError) as exc:
        raise StandardizeError(f"step key {key!r} step {step}: not Unicode code points: "
                               f"{exc}") from exc


def _flags(steps: Steps, name: str, num_steps: int) -> np.ndarray:
    """The source's per-step flag; without one, first/last position (never terminal)."""
    if name in steps:
        return np.asarray(steps[name]).reshape(num_steps).astype(bool)
    flags = np.zeros(num_steps, bool)
    if name == "is_first":
        flags[0] = True
    elif name == "is_last":
        flags[-1] = True
    return flags


def _depth_maps(value: Any, keep: np.ndarray, key: str, scale: float) -> list[np.ndarray]:
    """(H, W) float32 metres per kept step from a numeric (T, H, W[, 1]) tensor or PNG bytes."""
    array = np.asarray(value)
    if array.dtype != object:
        if array.ndim == 4 and array.shape[-1] == 1:
            array = array[..., 0]
        if array.ndim != 3 or not np.issubdtype(array.dtype, np.number):
            raise StandardizeError(f"step key {key!r}: expected depth of shape (T, H, W) or "
                                   f"(T, H, W, 1), got {array.shape} dtype {array.dtype}")
        maps = array[keep].astype(np.float32, copy=False)   # one copy for the episode
        return list(maps if scale == 1 else maps * np.float32(scale))
    maps = []
    for i in keep:
        try:
            with Image.open(io.BytesIO(bytes(array[i]))) as img:
                depth = np.asarray(img)
        except Exception as exc:  # PIL raises several types for bad data
            raise StandardizeError(f"step key {key!r} step {i}: cannot decode depth: {exc}") \
                from exc
        if depth.ndim == 3 and depth.shape[-1] == 1:
            depth = depth[..., 0]
        if depth.ndim != 2:
            raise StandardizeError(f"step key {key!r} step {i}: depth image must have one "
                                   f"channel, got shape {depth.shape}")
        maps.append(depth.astype(np.float32) * np.float32(scale))
    return maps


def jsonable(value: Any) -> Any:
    """Episode metadata → JSON-able (bytes → str, numpy → lists/scalars)."""
    if isinstance(value, (bytes, bytearray, np.bytes_)):
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray):
        return [jsonable(v) for v in value] if value.dtype == object or value.dtype.kind == "S" \
            else value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value
