"""How one RLDS episode record becomes numpy arrays.

The dataset's own tfds feature spec says what each Example key holds. It is first pruned to what
the build uses (`without_unused_frames`), then turned into a flat list of `Field`s that
`armdata.pipeline.sources.tfrecord` decodes without TensorFlow. The result equals what tfds gives with the steps
left encoded (`SkipDecoding`): images as encoded bytes, every tensor cast to its declared dtype
(tests/test_rlds_features.py compares the two on the Bridge sample and generated data). Feature
kinds that this does not cover (ragged or compressed tensors, optional features, decoded images
in episode metadata) are parsed by TensorFlow's own parser instead.
"""
from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from armdata.pipeline.sources.tfrecord import BYTES, FLOAT, INT64, KIND_NAMES, RecordError, parse_example

log = logging.getLogger(__name__)

Decoder = Callable[[bytes], dict[str, Any]]


def is_frame(feature: Any) -> bool:
    """A per-step picture: an image, or a tensor of rank ≥ 2 such as a depth map."""
    import tensorflow_datasets as tfds

    return isinstance(feature, (tfds.features.Image, tfds.features.Video)) or (
        isinstance(feature, tfds.features.Tensor) and len(feature.shape) >= 2)


def without_unused_frames(features: Any, keep: frozenset[str]) -> Any:
    """The episode features with the per-step frame features that `keep` does not name removed
    (a kept key may name a group: `observation` keeps everything under it). Everything else
    (actions, state, flags, text, metadata) stays, so standardize functions can use any of it."""
    import tensorflow_datasets as tfds

    def used(key: str) -> bool:
        return any(key == k or key.startswith(k + "/") or k.startswith(key + "/") for k in keep)

    def prune(feature: Any, prefix: str) -> Any:
        if type(feature) is tfds.features.FeaturesDict:
            return tfds.features.FeaturesDict({
                name: prune(child, f"{prefix}{name}/") for name, child in feature.items()
                if used(f"{prefix}{name}") or not is_frame(child)})
        return feature

    steps = features["steps"]
    pruned = tfds.features.Dataset(prune(steps.feature, ""), length=steps._length)
    return tfds.features.FeaturesDict({**dict(features.items()), "steps": pruned})


@dataclass(frozen=True)
class Field:
    """One Example key and how to turn its values into the array tfds would give."""
    path: tuple[str, ...]       # where it goes in the nested episode, e.g. ("steps", "action")
    kind: int                   # armdata.pipeline.sources.tfrecord BYTES / FLOAT / INT64
    dtype: Any                  # the declared numpy dtype (object for strings and images)
    shape: tuple[int, ...]      # per step for sequences, else the whole value's
    sequence: bool              # a per-step field of the `steps` dataset
    default: Any = None         # for a missing non-sequence key

    @property
    def key(self) -> str:
        return "/".join(self.path)


def example_fields(features: Any) -> list[Field] | str:
    """The `Field`s of an episode FeaturesDict, or why armdata.pipeline.sources.tfrecord cannot decode it."""
    import tensorflow_datasets as tfds
    from tensorflow_datasets.core.features.tensor_feature import Encoding
    from tensorflow_datasets.core.utils import dtype_utils

    fields: list[Field] = []

    def leaf(feature: Any, path: tuple[str, ...], sequence: bool) -> str | None:
        key = "/".join(path)
        info = feature.get_serialized_info()
        if isinstance(feature, tfds.features.Image):
            if not sequence:
                return f"{key} is an image outside the steps (decoded by tfds)"
        elif not isinstance(feature, tfds.features.Tensor) or type(feature) is tfds.features.Video:
            return f"{key} is a {type(feature).__name__} feature"
        elif getattr(feature, "_encoding", Encoding.NONE) != Encoding.NONE:
            return f"{key} is an encoded tensor"
        if getattr(feature, "_optional", False) or not hasattr(info, "shape") or \
                any(d is None for d in info.shape):
            return f"{key} has optional, ragged or dynamic values"
        dtype = info.np_dtype
        if dtype_utils.is_integer(dtype) or dtype_utils.is_bool(dtype):
            kind = INT64
        elif dtype_utils.is_floating(dtype):
            kind = FLOAT
        elif dtype_utils.is_string(dtype):
            kind, dtype = BYTES, np.dtype(object)
        else:
            return f"{key} has dtype {dtype}"
        fields.append(Field(path, kind, np.dtype(dtype), tuple(info.shape), sequence,
                            info.default_value))
        return None

    def walk(feature: Any, path: tuple[str, ...], sequence: bool) -> str | None:
        if type(feature) is tfds.features.FeaturesDict:
            for name, child in feature.items():
                reason = walk(child, (*path, name), sequence)
                if reason:
                    return reason
            return None
        if type(feature) is tfds.features.Dataset and not sequence:
            return walk(feature.feature, path, True)
        return leaf(feature, path, sequence)

    reason = walk(features, (), False)
    return reason if reason else fields


def decode_fields(record: bytes, fields: list[Field], keys: frozenset[str]) -> dict[str, Any]:
    """The nested episode `{"steps": {...}, "episode_metadata": {...}}` of one Example record,
    as tfds would give it. Raises RecordError naming the key on malformed values."""
    parsed = parse_example(record, keys)
    episode: dict[str, Any] = {}
    for field in fields:
        node = episode
        for name in field.path[:-1]:
            node = node.setdefault(name, {})
        node[field.path[-1]] = field_value(field, *parsed.get(field.key, (field.kind, None)))
    return episode


def field_value(field: Field, kind: int, values: Any) -> Any:
    size = math.prod(field.shape)
    if values is None and not field.sequence:   # an absent key: its default, if it has one
        if field.default is None:
            raise RecordError(f"feature {field.key} is missing")
        return np.asarray(field.default, field.dtype).reshape(field.shape)[()]
    if values is None or not len(values):   # absent step field, empty list, Feature with none
        values = [] if field.kind == BYTES else np.zeros(0, field.dtype)
    elif kind != field.kind:
        raise RecordError(f"feature {field.key} holds a {KIND_NAMES[kind]}, expected "
                          f"{KIND_NAMES[field.kind]}")
    n = len(values)
    if field.sequence:
        if (n % size if size else n):
            raise RecordError(f"feature {field.key} has {n} values, not a multiple of the "
                              f"{size} of shape {field.shape}")
        shape = (n // size if size else 0, *field.shape)
    else:
        if n != size:
            raise RecordError(f"feature {field.key} has {n} values, expected {size} for shape "
                              f"{field.shape}")
        shape = field.shape
    if field.kind == BYTES:
        array = np.empty(n, object)
        array[:] = values
    else:
        array = values.astype(field.dtype, copy=False)
    array = array.reshape(shape)
    return array if shape else array[()]


def make_decoder(features: Any) -> Decoder:
    """record bytes → nested episode, with armdata.pipeline.sources.tfrecord where it can, else with TensorFlow."""
    fields = example_fields(features)
    if not isinstance(fields, str):
        keys = frozenset(f.key for f in fields)
        return lambda record: decode_fields(record, fields, keys)
    log.info("parsing records with TensorFlow: %s", fields)
    return tensorflow_decoder(features)


def tensorflow_decoder(features: Any) -> Decoder:
    """TensorFlow's parser with the builder's feature spec (steps left encoded, as
    `SkipDecoding` does), traced once."""
    import tensorflow as tf
    import tensorflow_datasets as tfds
    from tensorflow_datasets.core import example_parser

    parser = example_parser.ExampleParser(features.get_serialized_info())
    decoders = {"steps": tfds.decode.SkipDecoding()}
    parse = tf.function(
        lambda record: features.decode_example(parser.parse_example(record), decoders=decoders),
        input_signature=[tf.TensorSpec([], tf.string)], autograph=False)

    def decode(record: bytes) -> dict[str, Any]:
        try:
            return tf.nest.map_structure(lambda t: t.numpy(), parse(tf.constant(record)))
        except tf.errors.OpError as exc:
            raise RecordError(f"{type(exc).__name__}: {tf_error_text(exc)}") from exc

    return decode


def tf_error_text(exc: Exception) -> str:
    """TensorFlow's message without the op and function-node decorations it adds."""
    text = getattr(exc, "message", str(exc))
    text = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", text)
    text = re.sub(r"\s*\[\[.*?\]\]|\s*\[Op:[^\]]*\].*", "", text, flags=re.S)
    return " ".join(text.split())
