"""Tiny random-weight models saved the way real ones are loaded (local dir / checkpoint file), and
generated depth maps, for tests and for demo builds with the depth stage."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from armdata.models.depth_anything import depth_anything_config, random_depth_model
from armdata.models.vqvae import VQVAE, save_vqvae, vqvae_input

TINY_DEPTH = dict(hidden_size=32, num_heads=2, num_layers=4, out_indices=(1, 2, 3, 4),
                  neck_hidden_sizes=(8, 16, 32, 32), fusion_hidden_size=16, head_hidden_size=8)


def make_tiny_depth_model(directory: Path, seed: int = 0) -> Path:
    """A DINOv2-backed Depth Anything V2 of a few thousand parameters, `save_pretrained` to
    `directory` (pass it as --depth-model)."""
    model = random_depth_model(depth_anything_config(**TINY_DEPTH), seed)
    model.save_pretrained(directory)
    return Path(directory)


def synthetic_depth_maps(n: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """(n, H, W) uint8 depth-like maps: a tilted ground plane with a few near blobs."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    maps = []
    for _ in range(n):
        d = rng.uniform(0.2, 1.0) * yy / height + rng.uniform(-0.3, 0.3) * xx / width
        for _ in range(rng.integers(1, 4)):
            cy, cx = rng.uniform(0, height), rng.uniform(0, width)
            r = rng.uniform(0.08, 0.3) * min(height, width)
            d = np.maximum(d, rng.uniform(0.6, 1.2)
                           * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r)))
        d = (d - d.min()) / (d.max() - d.min())
        maps.append((d * 255).astype(np.uint8))
    return np.stack(maps)


def make_tiny_vqvae(path: Path, seed: int = 0) -> Path:
    """The SPEC §2 VQ-VAE (its size is fixed by the checkpoint layout) with random weights and
    its codebook set to encoder outputs of generated maps, so that many codes are in use."""
    torch.manual_seed(seed)
    model = VQVAE().eval()
    maps = torch.from_numpy(synthetic_depth_maps(8, 120, 160, seed))
    with torch.no_grad():
        latents = model.latents(vqvae_input(maps)).reshape(-1, 512)
        pick = latents[torch.randperm(len(latents))[:128]]
        model._vq_vae._embedding.copy_(pick)
        model._vq_vae._ema_w.copy_(pick)
        model._vq_vae._ema_cluster_size.fill_(1.0)
    save_vqvae(model, path)
    return Path(path)


def make_depth_assets(directory: Path) -> tuple[Path, Path]:
    """(depth model dir, VQ-VAE checkpoint) under `directory`, for
    `armdata build ... --stages actions,depth --depth-model DIR --vqvae CKPT`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    return (make_tiny_depth_model(directory / "depth_model"),
            make_tiny_vqvae(directory / "vqvae.pt"))
