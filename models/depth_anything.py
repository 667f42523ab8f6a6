"""Depth Anything V2 (transformers `AutoModelForDepthEstimation`): loading and batched inference.

SPEC §2 step 1 done on the device for a whole batch: frames are resized so that the shorter side is
518 (aspect ratio kept, both sides multiples of 14, bicubic — as the Depth Anything V2 reference
`infer_image` does), ImageNet-normalized, run through the model, and the relative depth
(disparity-like: larger = nearer) is resized back to the frame with bilinear interpolation.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from armdata.models.device import autocast

INPUT_SIZE = 518
PATCH = 14
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


def _to_multiple(x: float, multiple: int, min_val: int) -> int:
    y = round(x / multiple) * multiple
    if y < min_val:
        y = math.ceil(x / multiple) * multiple
    return int(y)


def model_input_size(height: int, width: int, size: int = INPUT_SIZE,
                     multiple: int = PATCH) -> tuple[int, int]:
    """(h, w) fed to the model: scaled so that both sides are ≥ `size` with the aspect ratio kept
    (the larger of the two scale factors), each rounded to a multiple of `multiple`."""
    scale = max(size / height, size / width)
    return (_to_multiple(scale * height, multiple, size),
            _to_multiple(scale * width, multiple, size))


def load_depth_model(name_or_path: str, device: torch.device) -> nn.Module:
    """Load a depth-estimation checkpoint (Hub id or local directory) in fp32, eval mode."""
    from transformers import AutoModelForDepthEstimation
    try:
        model = AutoModelForDepthEstimation.from_pretrained(name_or_path, dtype=torch.float32)
    except OSError as exc:
        raise RuntimeError(f"cannot load the depth model {name_or_path!r} ({exc}); pass a local "
                           f"model directory with --depth-model DIR") from exc
    return model.to(device).eval()


def estimate_depth(model: nn.Module, frames: torch.Tensor) -> torch.Tensor:
    """(B, H, W, 3) uint8 frames on the model's device → (B, H, W) float32 relative depth."""
    device = frames.device
    height, width = frames.shape[1:3]
    x = frames.permute(0, 3, 1, 2).to(torch.float32) / 255.0
    x = F.interpolate(x, size=model_input_size(height, width), mode="bicubic",
                      align_corners=False)
    mean = torch.tensor(_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(_STD, device=device).view(1, 3, 1, 1)
    x = (x - mean) / std
    with autocast(device):
        depth = model(pixel_values=x).predicted_depth
    depth = F.interpolate(depth.to(torch.float32).unsqueeze(1), size=(height, width),
                          mode="bilinear", align_corners=True)
    return depth.squeeze(1)


def depth_to_u8(depth: torch.Tensor) -> torch.Tensor:
    """SPEC §2 step 2 per map: uint8((d - min) / (max - min + 1e-8) * 255), (B, H, W) → uint8."""
    flat = depth.flatten(1)
    lo = flat.min(1).values.view(-1, 1, 1)
    hi = flat.max(1).values.view(-1, 1, 1)
    # float → uint8 truncates toward zero, like numpy's astype in the reference.
    return ((depth - lo) / (hi - lo + 1e-8) * 255).to(torch.uint8)


# Sizes of the published V2 checkpoints (transformers configs), for building random-weight models of
# the same architecture (benchmarks) without a download.
ARCHITECTURES: dict[str, dict[str, Any]] = {
    "small": dict(hidden_size=384, num_heads=6, num_layers=12, out_indices=(3, 6, 9, 12),
                  neck_hidden_sizes=(48, 96, 192, 384), fusion_hidden_size=64),
    "base": dict(hidden_size=768, num_heads=12, num_layers=12, out_indices=(3, 6, 9, 12),
                 neck_hidden_sizes=(96, 192, 384, 768), fusion_hidden_size=128),
    "large": dict(hidden_size=1024, num_heads=16, num_layers=24, out_indices=(5, 12, 18, 24),
                  neck_hidden_sizes=(256, 512, 1024, 1024), fusion_hidden_size=256),
}


def depth_anything_config(hidden_size: int, num_heads: int, num_layers: int,
                          out_indices: tuple[int, ...], neck_hidden_sizes: tuple[int, ...],
                          fusion_hidden_size: int, head_hidden_size: int = 32) -> Any:
    """A `DepthAnythingConfig` (relative depth) with a DINOv2 ViT/14 backbone of the given size."""
    from transformers import DepthAnythingConfig

    backbone = {"model_type": "dinov2", "image_size": INPUT_SIZE, "patch_size": PATCH,
                "hidden_size": hidden_size, "num_attention_heads": num_heads,
                "num_hidden_layers": num_layers, "out_indices": list(out_indices),
                "reshape_hidden_states": False}
    return DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=hidden_size,
                               neck_hidden_sizes=list(neck_hidden_sizes),
                               fusion_hidden_size=fusion_hidden_size,
                               head_hidden_size=head_hidden_size)


def random_depth_model(config: Any, seed: int = 0) -> nn.Module:
    """`DepthAnythingForDepthEstimation` with random weights (tests and benchmarks)."""
    from transformers import DepthAnythingForDepthEstimation

    torch.manual_seed(seed)
    return DepthAnythingForDepthEstimation(config).eval()
