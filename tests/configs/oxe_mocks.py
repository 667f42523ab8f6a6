"""Mock Open-X datasets written with tfds' own writer from each dataset's TFDS feature spec.

A spec is a nested dict of the episode's features in a short notation: `f32[7]` a float32
Tensor of shape (7,), `f32` a float32 Scalar, `bool` a bool Scalar, `str` a string Tensor of
shape () (how Google's Open-X conversions store `natural_language_instruction`), `text` a Text
feature (the `*_converted_externally_to_rlds` datasets' `language_instruction`),
`jpeg[H,W,3]` / `png[H,W,3]` an Image, `png16[H,W,1]` a 16-bit PNG Image (depth maps such as
maniskill's), `zlib f32[7]` a zlib-encoded Tensor (kuka),
`image f32[H,W,1]` a float32 Image (tfds stores it as a 4-channel PNG of the float's bytes;
berkeley_autolab_ur5's `image_with_depth`).
`write_mock` fills every field with deterministic values (frames: smooth pictures; floats: small
normals), lets a dataset override fields (gripper commands, instructions), and returns the
version directory together with the values written, for the test's expectations.
"""
from __future__ import annotations

import functools
import io
import re
import zlib
from pathlib import Path
from typing import Any, Callable

import numpy as np
import tensorflow_datasets as tfds

from PIL import Image

from armdata.schemas.episode import encode_jpeg

Spec = dict[str, Any]
Override = Callable[[np.random.Generator, int, int], Any]   # (rng, episode, T) -> (T, ...) values
LEAF = re.compile(r"^(?:(zlib|image) )?(f32|f64|i32|i64|u8|bool|str|text|jpeg|png16|png)"
                  r"(?:\[([\d,]+)\])?$")
DTYPES = {"f32": np.float32, "f64": np.float64, "i32": np.int32, "i64": np.int64,
          "u8": np.uint8, "bool": np.bool_}


def _parse(leaf: str) -> tuple[str, str, tuple[int, ...] | None]:
    """(prefix: "", "zlib" or "image"; kind; shape)."""
    match = LEAF.match(leaf)
    if not match:
        raise ValueError(f"bad spec leaf {leaf!r}")
    prefix, kind, dims = match.groups()
    return prefix or "", kind, tuple(int(d) for d in dims.split(",")) if dims else None


def feature(spec: Any) -> Any:
    """The tfds feature for a spec (nested dicts become FeaturesDicts)."""
    if isinstance(spec, dict):
        return tfds.features.FeaturesDict({k: feature(v) for k, v in spec.items()})
    prefix, kind, shape = _parse(spec)
    if kind in ("jpeg", "png"):
        return tfds.features.Image(shape=shape, dtype=np.uint8, encoding_format=kind)
    if prefix == "image":
        return tfds.features.Image(shape=shape, dtype=DTYPES[kind])
    if kind == "png16":
        return tfds.features.Image(shape=shape, dtype=np.uint16, encoding_format="png")
    if kind == "text":
        return tfds.features.Text()
    if kind == "str":
        return tfds.features.Tensor(shape=(), dtype=np.str_)
    if shape is None:
        return tfds.features.Scalar(dtype=DTYPES[kind])
    encoding = tfds.features.Encoding.ZLIB if prefix == "zlib" else tfds.features.Encoding.NONE
    return tfds.features.Tensor(shape=shape, dtype=DTYPES[kind], encoding=encoding)


@functools.lru_cache(maxsize=None)
def _gradient(h: int, w: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x + y) % 256],
                    axis=-1).astype(np.uint8)


def _picture(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """A smooth colour picture, shifted per seed (cheap to make and to encode at full size)."""
    return _gradient(shape[0], shape[1]) + np.uint8(seed % 251)


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _values(spec: str, key: str, rng: np.random.Generator, episode: int, T: int) -> Any:
    """T values of one step field."""
    _, kind, shape = _parse(spec)
    if kind in ("jpeg", "png"):
        encode = _png if kind == "png" else functools.partial(encode_jpeg, quality=90)
        return [encode(_picture(shape, zlib.crc32(f"{key}/{episode}/{t}".encode()))) for t in range(T)]
    if kind == "png16":   # smooth pixel arrays; tfds' own encoder writes the 16-bit PNGs
        ramp = np.arange(np.prod(shape), dtype=np.int64).reshape(shape) * 7
        return [((ramp + zlib.crc32(f"{key}/{episode}/{t}".encode())) % 2 ** 16).astype(np.uint16)
                for t in range(T)]
    if kind in ("text", "str"):
        return [f"{key} of episode {episode}"] * T
    size = (T, *(shape or ()))
    if kind == "bool":
        return rng.random(size) < 0.5
    if kind in ("i32", "i64", "u8"):
        return rng.integers(0, 2, size).astype(DTYPES[kind])
    return (rng.normal(size=size) * 0.1).astype(DTYPES[kind])


def _flat(spec: Spec, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], str]:
    """Leaves by path (a feature name may itself hold '/', e.g. bc_z's `future/xyz_residual`)."""
    out = {}
    for key, value in spec.items():
        if isinstance(value, dict):
            out.update(_flat(value, (*prefix, key)))
        else:
            out[(*prefix, key)] = value
    return out


def _nest(flat: dict[tuple[str, ...], Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for (*parents, leaf), value in flat.items():
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


class MockBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Writes the episodes it is given; `_builder_class` names a subclass per dataset."""

    VERSION = tfds.core.Version("0.1.0")

    def __init__(self, *, spec: Spec, episodes: list[dict], **kwargs):
        self._spec, self._episodes = spec, episodes
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        features = {k: (tfds.features.Dataset(feature(v)) if k == "steps" else feature(v))
                    for k, v in self._spec.items()}
        return tfds.core.DatasetInfo(builder=self, description="mock Open-X dataset",
                                     features=tfds.features.FeaturesDict(features))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        for index, episode in enumerate(self._episodes):
            yield index, episode


@functools.lru_cache(maxsize=None)
def _builder_class(name: str, version: str) -> type[MockBuilder]:
    return type(f"MockBuilder_{name}", (MockBuilder,),
                {"name": name, "VERSION": tfds.core.Version(version), "__module__": __name__},
                skip_registration=True)


def write_mock(root: Path, name: str, version: str, spec: Spec,
               overrides: dict[str, Override] | None = None, num_episodes: int = 3,
               num_steps: int = 10, seed: int = 0) -> tuple[Path, list[dict[str, Any]]]:
    """Write `<root>/<name>/<version>` and return it with each episode's flat step values
    (`{"observation/image": [...], "action": array, ...}`) in the order written."""
    overrides = overrides or {}
    rng = np.random.default_rng(seed)
    paths = _flat(spec["steps"])
    flat_steps = {"/".join(p): leaf for p, leaf in paths.items()}   # as the pipeline keys them
    unknown = sorted(set(overrides) - set(flat_steps))
    if unknown:
        raise ValueError(f"{name}: overrides for keys not in the spec: {unknown}")
    written, examples = [], []
    for e in range(num_episodes):
        T = num_steps
        values = {k: (overrides[k](rng, e, T) if k in overrides else _values(v, k, rng, e, T))
                  for k, v in flat_steps.items()}
        for flag, at in (("is_first", 0), ("is_last", T - 1), ("is_terminal", T - 1)):
            if flag in values:
                values[flag] = np.arange(T) == at
        steps = [_nest({p: _step(values["/".join(p)][t], leaf) for p, leaf in paths.items()})
                 for t in range(T)]
        example = {"steps": steps}
        for group in sorted(set(spec) - {"steps"}):   # episode-level features
            if isinstance(spec[group], dict):
                example[group] = _nest({p: _values(leaf, "/".join(p), rng, e, 1)[0]
                                        for p, leaf in _flat(spec[group]).items()})
            else:
                example[group] = _values(spec[group], group, rng, e, 1)[0]
        examples.append(example)
        written.append(values)
    builder = _builder_class(name, version)(spec=spec, episodes=examples, data_dir=str(root))
    builder.download_and_prepare(file_format="tfrecord")
    return Path(builder.data_dir), written


def _step(value: Any, spec: str) -> Any:
    """One step's value as tfds' encoder takes it (encoded frames as file objects)."""
    kind = _parse(spec)[1]
    if kind in ("jpeg", "png"):
        return io.BytesIO(value)
    return value
