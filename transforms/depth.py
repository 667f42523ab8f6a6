"""Depth stage: every kept step gets its 100 depth codes (SPEC §2), optionally its 8-bit depth map.

Depth comes from Depth Anything V2 (`--depth-source model`, the default) or from the dataset's depth
camera (`--depth-source sensor`, config `depth_key`): metres are turned into the same disparity-like
convention as the model's output (nearer = larger: 1/depth on valid pixels, invalid pixels set to the
farthest valid value) before the per-frame min-max to 8 bit. Frames are processed per episode in
batches of `--depth-batch-size` frames of one size, on the device from upload to codes. A frame that
cannot be used (corrupt image, non-finite model output, missing/invalid/constant sensor depth) is
dropped with its reason and counted.

torch and the models are imported where they run, so that the command line (which registers this
stage's options) starts without them.
"""
from __future__ import annotations

import argparse
import collections
from typing import TYPE_CHECKING, Any

import numpy as np

from armdata.models.device import DEVICE_CHOICES, resolve_device
from armdata.models.hub import DEFAULT_DEPTH_MODEL, SMALL_DEPTH_MODEL, VQVAE_FILE, VQVAE_REPO
from armdata.models.provenance import describe_file, describe_model
from armdata.schemas.config import ConfigError, DatasetConfig
from armdata.schemas.episode import DataError, Episode, Rejection, decode_rgb, encode_png
from armdata.transforms.base import Stage, shared_model

if TYPE_CHECKING:
    import torch

SOURCES = ("model", "sensor")


def sensor_disparity(depth_m: torch.Tensor) -> tuple[torch.Tensor, list[tuple[str, str] | None]]:
    """(B, H, W) metric depth → disparity-like maps (1/depth; invalid pixels — non-finite or ≤ 0 —
    take the frame's farthest valid value so that min-max spans valid pixels only), and per frame
    None or (counter key, reason) why it cannot be used."""
    import torch

    valid = torch.isfinite(depth_m) & (depth_m > 0)
    disp = torch.where(valid, 1.0 / torch.where(valid, depth_m, 1.0), 0.0)
    n_valid = valid.flatten(1).sum(1)
    far = torch.where(valid, disp, torch.inf).flatten(1).min(1).values
    far = torch.where(n_valid > 0, far, 0.0)
    disp = torch.where(valid, disp, far.view(-1, 1, 1))
    near = disp.flatten(1).max(1).values
    problems: list[tuple[str, str] | None] = []
    for n, lo, hi in zip(n_valid.tolist(), far.tolist(), near.tolist()):
        if n == 0:
            problems.append(("sensor_depth_invalid", "sensor depth has no finite positive pixel"))
        elif hi <= lo:
            problems.append(("sensor_depth_constant", "sensor depth is constant"))
        else:
            problems.append(None)
    return disp, problems


INPUT_KINDS = ("rgb", "sensor", "depth_map")


def depth_to_codes(vqvae: Any, inputs: torch.Tensor, kind: str, depth_net: Any = None
                   ) -> tuple[torch.Tensor, torch.Tensor, list[tuple[str, str] | None]]:
    """The depth → codes chain (SPEC §2) of a batch on the device, for the depth stage and
    `armdata depth-tokens`. `kind`: "rgb" (B, H, W, 3) uint8 frames through the depth model,
    "sensor" (B, H, W) metric depth as disparity, "depth_map" (B, H, W) uint8 maps as they are.
    Returns the 8-bit depth maps (B, H, W), the codes (B, 100), and per frame None or (counter
    key, reason) why it cannot be used; all still on the device."""
    import torch

    from armdata.models.depth_anything import depth_to_u8, estimate_depth
    from armdata.models.vqvae import vqvae_input

    finite = None
    problems: list[tuple[str, str] | None] = [None] * len(inputs)
    if kind == "rgb":
        depth = estimate_depth(depth_net, inputs)
        finite = torch.isfinite(depth).flatten(1).all(1)
        maps = depth_to_u8(torch.nan_to_num(depth))
    elif kind == "sensor":
        disparity, problems = sensor_disparity(inputs)
        maps = depth_to_u8(disparity)
    elif kind == "depth_map":
        maps = inputs
    else:
        raise ValueError(f"depth input must be one of {INPUT_KINDS}, got {kind!r}")
    codes = vqvae.encode(vqvae_input(maps))
    if finite is not None:   # read once the encoder is queued: no device sync in between
        problems = [None if ok else ("depth_not_finite", "depth model output is not finite")
                    for ok in finite.tolist()]
    return maps, codes, problems


class DepthStage(Stage):
    name = "depth"

    def __init__(self, depth_model: str = DEFAULT_DEPTH_MODEL, vqvae: str | None = None,
                 batch_size: int = 16, device: str = "auto", source: str = "model",
                 store_depth: bool = False) -> None:
        super().__init__()
        if source not in SOURCES:
            raise ValueError(f"depth source must be one of {SOURCES}, got {source!r}")
        if batch_size < 1:
            raise ValueError(f"depth batch size must be ≥ 1, got {batch_size}")
        if device not in DEVICE_CHOICES:
            raise ValueError(f"depth device must be one of {DEVICE_CHOICES}, got {device!r}")
        self.depth_model = depth_model
        self.vqvae_path = vqvae
        self.batch_size = batch_size
        self.device_choice = device
        self.source = source
        self.store_depth = store_depth
        self._device: torch.device | None = None
        self._depth: Any = None
        self._vqvae: Any = None

    @property
    def reads_sensor_depth(self) -> bool:   # type: ignore[override]
        return self.source == "sensor"

    def __getstate__(self) -> dict[str, Any]:
        # Models never travel with the pipeline: each worker loads them in setup().
        state = self.__dict__.copy()
        state.update(_device=None, _depth=None, _vqvae=None)
        return state

    def setup(self) -> None:
        from armdata.models.depth_anything import load_depth_model
        from armdata.models.vqvae import load_vqvae

        device = resolve_device(self.device_choice, "depth stage")
        if self.source == "model":
            self._depth = shared_model(("depth_anything", self.depth_model, str(device)),
                                       lambda: load_depth_model(self.depth_model, device))
        self._vqvae = shared_model(("vqvae", self.vqvae_path, str(device)),
                                   lambda: load_vqvae(self.vqvae_path, device))
        self._device = device

    offline = "--depth-source sensor (for a dataset with a depth camera) with --vqvae PATH"

    def models(self) -> dict[str, Any]:
        out: dict[str, Any] = {} if self.vqvae_path else {"--vqvae": (VQVAE_REPO, VQVAE_FILE)}
        if self.source == "model":
            out["--depth-model"] = self.depth_model
        return out

    def options(self) -> dict[str, Any]:
        """Depth source, model and VQ-VAE checkpoint (loaded once on the CPU to check it)."""
        from armdata.models.vqvae import load_vqvae, resolve_checkpoint

        checkpoint = resolve_checkpoint(self.vqvae_path)
        load_vqvae(str(checkpoint), "cpu")
        vqvae = describe_file(checkpoint, "VQ-VAE checkpoint")
        if self.vqvae_path is None:
            vqvae["path"] = f"{VQVAE_REPO}/{VQVAE_FILE}"   # not the local cache's path
        out: dict[str, Any] = {"source": self.source, "vqvae": vqvae,
                               "store_depth": self.store_depth}
        if self.source == "model":
            out["depth_model"] = describe_model(self.depth_model, "--depth-model")
        return out

    def process(self, episode: Episode) -> tuple[Episode | None, list[Rejection]]:
        if self._device is None:
            self.setup()
        problems: dict[int, str] = {}
        inputs = self._inputs(episode, problems)
        by_shape: dict[tuple[int, ...], list[int]] = collections.defaultdict(list)
        for pos, array in inputs.items():
            by_shape[array.shape].append(pos)
        for positions in by_shape.values():
            for start in range(0, len(positions), self.batch_size):
                chunk = positions[start:start + self.batch_size]
                self._process_batch(episode, chunk, np.stack([inputs[p] for p in chunk]),
                                    problems)
        rejections = episode.drop_steps(problems, self.name)
        return (episode if episode.steps else None), rejections

    def _fail(self, problems: dict[int, str], pos: int, key: str, reason: str) -> None:
        problems[pos] = reason
        self.count(key)

    def _inputs(self, episode: Episode, problems: dict[int, str]) -> dict[int, np.ndarray]:
        """Per step position: the decoded RGB frame (model) or the metric depth map (sensor)."""
        inputs = {}
        for pos, step in enumerate(episode.steps):
            if self.source == "model":
                try:
                    inputs[pos] = decode_rgb(step.image)
                except DataError as exc:
                    self._fail(problems, pos, "image_corrupt", str(exc))
            elif step.sensor_depth is None:
                self._fail(problems, pos, "sensor_depth_missing", "step has no sensor depth")
            else:
                inputs[pos] = np.asarray(step.sensor_depth, np.float32)
        return inputs

    def _process_batch(self, episode: Episode, positions: list[int], batch: np.ndarray,
                       problems: dict[int, str]) -> None:
        import torch

        with torch.inference_mode():
            maps, codes, frame_problems = depth_to_codes(
                self._vqvae, torch.from_numpy(batch).to(self._device),
                "rgb" if self.source == "model" else "sensor", self._depth)
            codes = codes.to(torch.uint8).cpu().numpy()
            maps_np = maps.cpu().numpy() if self.store_depth else None
        for i, pos in enumerate(positions):
            if frame_problems[i] is not None:
                self._fail(problems, pos, *frame_problems[i])
                continue
            step = episode.steps[pos]
            step.depth_codes = codes[i]
            if maps_np is not None:
                step.depth_png = encode_png(maps_np[i])
            self.count("frames")


def add_build_arguments(parser: argparse._ActionsContainer) -> None:
    parser.add_argument("--depth-model", default=DEFAULT_DEPTH_MODEL,
                        help=f"Depth Anything V2 checkpoint: Hub id or local directory (default "
                             f"{DEFAULT_DEPTH_MODEL}, CC-BY-NC-4.0, as the reference; "
                             f"{SMALL_DEPTH_MODEL} is Apache-2.0)")
    parser.add_argument("--vqvae", default=None,
                        help="VQ-VAE checkpoint path (default: vae-final.pt from the Hub repo "
                             "allenai/MolmoAct-7B-D-0812)")
    parser.add_argument("--depth-batch-size", type=int, default=16,
                        help="frames per depth-model batch; bounds GPU memory (default 16)")
    parser.add_argument("--depth-source", choices=SOURCES, default="model",
                        help="model: Depth Anything V2; sensor: the config's depth_key camera")
    parser.add_argument("--store-depth", action="store_true",
                        help="also store the 8-bit depth map as PNG (column depth_png)")
    parser.add_argument("--depth-device", choices=DEVICE_CHOICES, default="auto",
                        help="device for the depth stage (auto: CUDA if available)")


def stage_from_args(args: argparse.Namespace, config: DatasetConfig) -> DepthStage:
    if args.depth_source == "sensor" and not config.depth_key:
        raise ConfigError(f"--depth-source sensor needs a depth camera, but config "
                          f"{config.name!r} sets no depth_key")
    if args.depth_batch_size < 1:
        raise ConfigError(f"--depth-batch-size must be ≥ 1, got {args.depth_batch_size}")
    return DepthStage(depth_model=args.depth_model, vqvae=args.vqvae,
                      batch_size=args.depth_batch_size, device=args.depth_device,
                      source=args.depth_source, store_depth=args.store_depth)
