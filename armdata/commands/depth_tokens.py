"""`armdata depth-tokens`: the 100 depth codes of image files.

An 8-bit single-channel PNG is taken as a depth map and tokenized directly; any other image is an
RGB frame whose depth is estimated first (Depth Anything V2), through the depth stage's own chain.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import numpy as np
import torch
from PIL import Image

from armdata.models.depth_anything import load_depth_model
from armdata.models.device import DEVICE_CHOICES, resolve_device
from armdata.models.hub import DEFAULT_DEPTH_MODEL, VQVAE_FILE, VQVAE_REPO, check_models
from armdata.models.vqvae import load_vqvae
from armdata.errors import UsageError
from armdata.schemas.output import depth_text
from armdata.transforms.depth import depth_to_codes


def read_image(path: str) -> tuple[str, np.ndarray]:
    """("depth_map", (H, W) uint8) for an 8-bit single-channel image, else ("rgb", (H, W, 3))."""
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode == "L":
                return "depth_map", np.array(img)
            if img.mode in ("I", "I;16", "I;16B", "F"):
                raise ValueError(f"{img.mode} image: convert the depth map to 8 bit "
                                 f"(SPEC §2 min-max) first")
            return "rgb", np.array(img.convert("RGB"))
    except OSError as exc:
        raise ValueError(f"cannot read image: {exc}") from exc


def read_kind(path: str) -> str | None:
    """"depth_map" or "rgb" from the image's header; None when it is no readable image (its
    error is reported with the results)."""
    try:
        with Image.open(path) as img:
            return "depth_map" if img.mode == "L" else "rgb"
    except OSError:
        return None


BATCH = 16   # frames per model call, as the depth stage's default batch


def tokenize_files(files: list[str], vqvae_path: str | None, depth_model: str,
                   device: torch.device) -> list[dict[str, Any]]:
    """One result per file, in order: {file, source, codes, tokens} or {file, error}. Files of
    the same kind and size go through the depth stage's chain (`transforms.depth.depth_to_codes`)
    together, up to BATCH at a time, with one copy back per batch."""
    vqvae = load_vqvae(vqvae_path, device)
    depth_net = None
    results: list[dict[str, Any]] = [{} for _ in files]
    waiting: dict[tuple[str, tuple[int, ...]], list[tuple[int, np.ndarray]]] = {}

    def encode(kind: str, batch: list[tuple[int, np.ndarray]]) -> None:
        nonlocal depth_net
        if kind == "rgb" and depth_net is None:
            depth_net = load_depth_model(depth_model, device)
        inputs = torch.from_numpy(np.stack([array for _, array in batch])).to(device)
        _, codes, problems = depth_to_codes(vqvae, inputs, kind, depth_net)
        for (i, _), row, problem in zip(batch, codes.cpu().numpy(), problems):
            results[i] = {"file": files[i], "error": problem[1]} if problem is not None else \
                {"file": files[i], "source": kind, "codes": row.tolist(), "tokens": depth_text(row)}

    with torch.inference_mode():
        for i, path in enumerate(files):
            try:
                kind, array = read_image(path)
            except ValueError as exc:
                results[i] = {"file": path, "error": str(exc)}
                continue
            batch = waiting.setdefault((kind, array.shape), [])
            batch.append((i, array))
            if len(batch) == BATCH:
                encode(kind, waiting.pop((kind, array.shape)))
        for (kind, _), batch in waiting.items():
            encode(kind, batch)
    return results


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "depth-tokens", help="depth tokens of depth maps (8-bit PNG) or RGB images",
        description="Print the 100 depth codes (SPEC §2) of each file: an 8-bit single-channel "
                    "PNG is tokenized as a depth map, an RGB image gets its depth estimated "
                    "first.")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--vqvae", default=None,
                   help="VQ-VAE checkpoint (default: vae-final.pt from allenai/MolmoAct-7B-D-0812)")
    p.add_argument("--depth-model", default=DEFAULT_DEPTH_MODEL,
                   help=f"Depth Anything V2 Hub id or local dir for RGB inputs "
                        f"(default {DEFAULT_DEPTH_MODEL})")
    p.add_argument("--json", action="store_true",
                   help="print a JSON list of {file, source, codes, tokens} (or {file, error})")
    p.add_argument("--device", choices=DEVICE_CHOICES, default="auto")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    missing = [f for f in args.files if not os.path.isfile(f)]
    if missing:
        raise UsageError(f"no such file: {', '.join(missing)}")
    models: dict[str, Any] = {} if args.vqvae else {"--vqvae": (VQVAE_REPO, VQVAE_FILE)}
    if any(read_kind(f) == "rgb" for f in args.files):
        models["--depth-model"] = args.depth_model
    check_models(models, "pass --vqvae PATH (e.g. armdata-demo/vqvae/vqvae.pt written by "
                         "`armdata demo`) and 8-bit depth maps instead of RGB images")
    try:
        device = resolve_device(args.device, "depth-tokens")
        results = tokenize_files(args.files, args.vqvae, args.depth_model, device)
    except (RuntimeError, FileNotFoundError, ValueError) as exc:   # models that cannot load
        raise UsageError(str(exc)) from exc
    if args.json:
        print(json.dumps(results))
    for r in results:
        if "error" in r:
            print(f"{r['file']}: error: {r['error']}", file=sys.stderr)
        elif not args.json:
            print(f"{r['file']}\t{r['tokens']}")
    return 1 if any("error" in r for r in results) else 0
