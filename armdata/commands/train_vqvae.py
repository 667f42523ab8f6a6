"""`armdata train-vqvae`: train the SPEC §2 depth VQ-VAE on 8-bit depth maps.

Maps are streamed from a built dataset (the `depth_png` column of `data/*.parquet`, one row group
at a time, so the dataset never has to fit in memory) or from a directory of depth PNGs, in a new
shuffled order every epoch; when the preprocessed maps fit in `--cache-mb` they are decoded once
and kept in memory. The codebook is trained by EMA (decay 0.99) with a commitment loss of 0.25. A
fresh codebook is seeded k-means++-style from the encoder outputs of the first batch, and dead codes
(unassigned since the last check, or with an EMA assignment count below `--dead-threshold`) are
re-seeded from the current batch every `--restart-every` batches and at each epoch end, so that the
codebook cannot collapse onto a few codes whatever the dataset size. Each epoch reports
reconstruction MSE/PSNR and codebook usage/perplexity, then writes `vqvae.pt` (the layout `--vqvae`
and MolmoAct read) and `train_state.pt` (optimizer and epoch, for `--resume`).
"""
from __future__ import annotations

import argparse
import io
import json
import logging
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow.parquet as pq
import torch
import tqdm
from PIL import Image

from armdata.models.device import DEVICE_CHOICES, autocast, resolve_device
from armdata.torch_files import first_sentences, load_weights_only
from armdata.models.vqvae import (IMAGE_SIZE, NUM_CODES, VQVAE, EMACodebook, ResidualBlock, load_vqvae,
                          save_vqvae, vqvae_input)
from armdata.errors import UsageError
from armdata.schemas.output import image_bytes

log = logging.getLogger(__name__)


class TrainError(ValueError):
    """Bad training input (no depth maps, unreadable source)."""


@dataclass(frozen=True)
class DepthSource:
    """Where the maps are: Parquet row groups (file, index, rows) or PNG files."""
    row_groups: tuple[tuple[Path, int, int], ...] = ()
    pngs: tuple[Path, ...] = ()

    @property
    def num_maps(self) -> int:
        return sum(n for _, _, n in self.row_groups) + len(self.pngs)


def open_source(path: str | Path) -> DepthSource:
    """A built dataset (`path/data/*.parquet` with a `depth_png` column) or a directory of PNGs."""
    root = Path(path)
    shards = sorted((root / "data").glob("*.parquet"))
    if shards:
        groups = []
        for shard in shards:
            meta = pq.ParquetFile(shard).metadata
            # Leaf column holding the PNG: `depth_png.bytes` (schema v2 Image struct) or
            # `depth_png` (v1 binary); its null count includes null structs.
            paths = [meta.schema.column(i).path for i in range(meta.num_columns)]
            col = next((paths.index(p) for p in ("depth_png.bytes", "depth_png") if p in paths),
                       None)
            if col is None:
                raise TrainError(f"{shard} has no depth_png column: build with --store-depth")
            for i in range(meta.num_row_groups):
                rg = meta.row_group(i)
                stats = rg.column(col).statistics
                nulls = stats.null_count if stats is not None and stats.has_null_count else 0
                groups.append((shard, i, rg.num_rows - nulls))
        return DepthSource(row_groups=tuple(groups))
    pngs = tuple(sorted(root.rglob("*.png"))) if root.is_dir() else ()
    if not pngs:
        raise TrainError(f"{root}: neither a built dataset (data/*.parquet) nor a directory of "
                         f"depth PNGs")
    return DepthSource(pngs=pngs)


def decode_depth_png(data: bytes, what: str) -> np.ndarray:
    """8-bit single-channel PNG → (H, W) uint8."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            mode, array = img.mode, np.asarray(img)
    except Exception as exc:  # PIL raises several types for bad data
        raise TrainError(f"{what}: cannot decode the depth PNG: {exc}") from exc
    if mode != "L":
        raise TrainError(f"{what}: expected an 8-bit single-channel depth map, got mode {mode}")
    return array


def iter_maps(source: DepthSource, seed: int) -> Iterator[np.ndarray]:
    """Every map once, in an order shuffled by `seed` (row groups, then rows within each)."""
    rng = np.random.default_rng(seed)
    if source.row_groups:
        for k in rng.permutation(len(source.row_groups)):
            shard, index, _ = source.row_groups[k]
            column = pq.ParquetFile(shard).read_row_group(index, columns=["depth_png"])[0]
            values = [image_bytes(v) for v in column.to_pylist() if v is not None]
            for j in rng.permutation(len(values)):
                yield decode_depth_png(values[j], f"{shard} row group {index}")
    for k in rng.permutation(len(source.pngs)):
        yield decode_depth_png(source.pngs[k].read_bytes(), str(source.pngs[k]))


def batch_input(maps: list[np.ndarray], device: torch.device) -> torch.Tensor:
    """Maps of any sizes → (B, 1, 320, 320) model input, resized in one batch per size."""
    by_shape: dict[tuple[int, ...], list[np.ndarray]] = {}
    for m in maps:
        by_shape.setdefault(m.shape, []).append(m)
    return torch.cat([vqvae_input(torch.from_numpy(np.stack(group)).to(device))
                      for group in by_shape.values()])


def iter_batches(source: DepthSource, seed: int, batch_size: int,
                 device: torch.device) -> Iterator[torch.Tensor]:
    maps: list[np.ndarray] = []
    for m in iter_maps(source, seed):
        maps.append(m)
        if len(maps) == batch_size:
            yield batch_input(maps, device)
            maps = []
    if maps:
        yield batch_input(maps, device)


class BatchStream:
    """Model-input batches of every map once per epoch, shuffled by epoch. Streams from `source`,
    or, when all preprocessed maps fit in `cache_bytes`, decodes and resizes them once and then
    only reshuffles (decoding and the exact PIL resize cost about as much as a small model step)."""

    def __init__(self, source: DepthSource, batch_size: int, device: torch.device,
                 cache_bytes: int) -> None:
        self.source, self.batch_size, self.device = source, batch_size, device
        self.cached: torch.Tensor | None = None
        if source.num_maps * IMAGE_SIZE * IMAGE_SIZE * 4 <= cache_bytes:
            self.cached = torch.cat(list(iter_batches(source, 0, batch_size, device)))

    def __len__(self) -> int:
        return math.ceil(self.source.num_maps / self.batch_size)

    def epoch(self, seed: int) -> Iterator[torch.Tensor]:
        if self.cached is None:
            yield from iter_batches(self.source, seed, self.batch_size, self.device)
            return
        order = torch.from_numpy(np.random.default_rng(seed).permutation(len(self.cached)))
        for i in range(0, len(order), self.batch_size):
            yield self.cached[order[i:i + self.batch_size].to(self.device)]


def psnr(mse: float) -> float:
    """Peak signal-to-noise ratio (dB) of maps in [0, 1]."""
    return 10 * math.log10(1.0 / mse) if mse > 0 else math.inf


def codebook_stats(counts: np.ndarray) -> tuple[float, float]:
    """(fraction of codes used, perplexity exp(H)) of assignment counts."""
    total = counts.sum()
    if total == 0:
        return 0.0, 0.0
    p = counts[counts > 0] / total
    return float((counts > 0).mean()), float(np.exp(-(p * np.log(p)).sum()))


def dead_codes(assigned: torch.Tensor, ema_cluster_size: torch.Tensor,
               threshold: float) -> torch.Tensor:
    """Codes to restart: none of the `assigned` counts since the last check, or an EMA
    assignment count per batch below `threshold` (a code that only a stray latent visits)."""
    return (assigned == 0) | (ema_cluster_size < threshold)


def restart_dead(book: EMACodebook, window: torch.Tensor, threshold: float,
                 latents: torch.Tensor) -> int:
    """Re-seed the dead codes from `latents` and start a new window of assignment counts."""
    restarted = book.restart(dead_codes(window, book._ema_cluster_size, threshold), latents)
    window.zero_()
    return restarted


def init_fresh_weights(model: VQVAE) -> None:
    """He-normal convolutions (variance-preserving through the ReLUs) with zero biases, and
    residual branches that start as the identity. PyTorch's default init shrinks the signal by
    about √3 per layer, so through the decoder's ~15 layers the output starts as a constant that
    takes hundreds of steps to pick up any structure from the codes."""
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            fan_in = module.weight[0].numel()
        elif isinstance(module, torch.nn.ConvTranspose2d):
            # Each output pixel of a stride-s transposed conv sees (k/s)² taps per input channel.
            fan_in = module.weight.shape[0] * module.weight[0, 0].numel() // math.prod(
                module.stride)
        else:
            continue
        torch.nn.init.normal_(module.weight, std=math.sqrt(2.0 / fan_in))
        torch.nn.init.zeros_(module.bias)
    for module in model.modules():
        if isinstance(module, ResidualBlock):
            torch.nn.init.zeros_(module.net[-1].weight)


def load_resume_state(path: Path, model: VQVAE, device: str) -> dict:
    """`train_state.pt` loaded weights-only into `model`; anything else is one TrainError line."""
    state = load_weights_only(path, "training state", device)
    if not isinstance(state, dict) or not {"weights", "optimizer", "epoch"} <= state.keys():
        raise TrainError(f"{path}: not a train-vqvae training state (expected weights, optimizer "
                         f"and epoch entries); train without --resume or into a new --out")
    try:
        model.load_state_dict(state["weights"])
    except RuntimeError as exc:
        raise TrainError(f"{path}: its weights do not fit the SPEC §2 VQ-VAE "
                         f"({first_sentences(str(exc))})") from exc
    return state


def train(args: argparse.Namespace) -> list[dict[str, float]]:
    """Train, checkpointing every epoch; returns the metrics of the epochs run."""
    source = open_source(args.source)
    if source.num_maps == 0:
        raise TrainError(f"{args.source}: no depth maps (all depth_png values are null)")
    device = resolve_device(args.device, "VQ-VAE training")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    model = VQVAE(decay=args.decay, commitment=args.commitment)
    if args.init:
        model.load_state_dict(load_vqvae(args.init, "cpu").state_dict())
    else:
        init_fresh_weights(model)
    model.to(device).train()
    start_epoch, fresh, resume_state = 0, not args.init, None
    state_path = out / "train_state.pt"
    if args.resume and state_path.exists():
        resume_state = load_resume_state(state_path, model, device)
        start_epoch, fresh = int(resume_state["epoch"]), False
        log.info("resuming from %s after epoch %d", state_path, start_epoch)
    elif args.resume:
        log.warning("--resume: %s does not exist, starting from scratch", state_path)
    # Same convolutions, but oneDNN runs them several times faster on NHWC than on NCHW.
    model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    if resume_state is not None:
        optimizer.load_state_dict(resume_state["optimizer"])
    stream = BatchStream(source, args.batch_size, device, args.cache_mb << 20)
    book = model._vq_vae
    history = []
    window = torch.zeros(NUM_CODES, dtype=torch.long, device=device)
    steps_in_window = 0
    for epoch in range(start_epoch, args.epochs):
        counts = torch.zeros(NUM_CODES, dtype=torch.long, device=device)
        sq_err, n_maps, restarted = 0.0, 0, 0
        bar = tqdm.tqdm(stream.epoch(args.seed + epoch), total=len(stream),
                        desc=f"epoch {epoch + 1}/{args.epochs}", unit="batch")
        latents = torch.empty(0, device=device)
        for x in bar:
            x = x.contiguous(memory_format=torch.channels_last)
            if fresh:
                # Start the output at the data mean: the deep ReLU decoder would otherwise take
                # hundreds of steps just to lift its output from ~0 to the maps' level. Seed the
                # whole codebook from this batch's encoder outputs, spread k-means++-style.
                with torch.no_grad():
                    model.decoder[-1].bias.fill_(float(x.mean()))
                    book.restart(torch.ones(NUM_CODES, dtype=torch.bool, device=device),
                                 model.latents(x).reshape(-1, book._embedding.shape[1]))
                fresh = False
            with autocast(device):
                loss, info = model.train_step(x)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip_grad)
            optimizer.step()
            used = torch.bincount(info["codes"], minlength=NUM_CODES)
            counts += used
            window += used
            steps_in_window += 1
            latents = info["latents"]
            if steps_in_window >= args.restart_every:
                restarted += restart_dead(book, window, args.dead_threshold, latents)
                steps_in_window = 0
            sq_err += float(info["recon_mse"]) * len(x)
            n_maps += len(x)
            bar.set_postfix(mse=f"{sq_err / n_maps:.5f}")
        if steps_in_window:     # the batches since the last check, however few, get theirs
            restarted += restart_dead(book, window, args.dead_threshold, latents)
            steps_in_window = 0
        mse = sq_err / n_maps
        usage, perplexity = codebook_stats(counts.cpu().numpy())
        metrics = {"epoch": epoch + 1, "maps": n_maps, "recon_mse": mse, "psnr_db": psnr(mse),
                   "codebook_usage": usage, "perplexity": perplexity, "restarted_codes": restarted}
        history.append(metrics)
        log.info("epoch %d: recon MSE %.6f, PSNR %.2f dB, codebook usage %.1f%%, perplexity %.1f, "
                 "%d codes restarted", epoch + 1, mse, metrics["psnr_db"], 100 * usage,
                 perplexity, restarted)
        with open(out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(metrics) + "\n")
        save_vqvae(model, out / "vqvae.pt")
        save_vqvae(model, state_path, optimizer=optimizer.state_dict(), epoch=epoch + 1)
    return history


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train-vqvae", help="train the depth VQ-VAE on depth maps",
        description="Train the SPEC §2 depth VQ-VAE on 8-bit depth maps from a built dataset "
                    "(depth_png column; build with --store-depth) or a directory of PNGs. "
                    "Writes OUT/vqvae.pt (load it with --vqvae), OUT/train_state.pt and "
                    "OUT/metrics.jsonl.")
    p.add_argument("source", help="built dataset directory (data/*.parquet) or directory of PNGs")
    p.add_argument("--out", required=True, help="directory for checkpoints and metrics")
    p.add_argument("--epochs", type=int, default=10, help="total epochs (default 10)")
    p.add_argument("--batch-size", type=int, default=32, help="maps per batch (default 32)")
    p.add_argument("--lr", type=float, default=3e-4, help="Adam learning rate (default 3e-4)")
    p.add_argument("--decay", type=float, default=0.99, help="codebook EMA decay (default 0.99)")
    p.add_argument("--commitment", type=float, default=0.25,
                   help="commitment loss weight (default 0.25)")
    p.add_argument("--clip-grad", type=float, default=1.0,
                   help="clip the gradient norm to this (default 1.0)")
    p.add_argument("--restart-every", type=int, default=5,
                   help="every this many batches (and at each epoch end), restart the codes "
                        "unassigned since the last check or below --dead-threshold (default 5)")
    p.add_argument("--dead-threshold", type=float, default=1.0,
                   help="restart codes whose EMA count of assignments per batch fell below "
                        "this (default 1.0)")
    p.add_argument("--cache-mb", type=int, default=2048,
                   help="keep the preprocessed maps in memory when they fit in this many MiB "
                        "(4 bytes × 320 × 320 each), else stream them every epoch (default 2048)")
    p.add_argument("--init", help="start from this checkpoint (e.g. MolmoAct's vae-final.pt)")
    p.add_argument("--resume", action="store_true",
                   help="continue from OUT/train_state.pt after its last finished epoch")
    p.add_argument("--device", choices=DEVICE_CHOICES, default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    for name in ("epochs", "batch_size", "restart_every"):
        if getattr(args, name) < 1:
            print(f"armdata train-vqvae: error: --{name.replace('_', '-')} must be ≥ 1",
                  file=sys.stderr)
            return 2
    for name in ("dead_threshold", "cache_mb"):
        if getattr(args, name) < 0:
            print(f"armdata train-vqvae: error: --{name.replace('_', '-')} must be ≥ 0",
                  file=sys.stderr)
            return 2
    try:
        history = train(args)
    except (TrainError, FileNotFoundError, RuntimeError, ValueError) as exc:
        raise UsageError(str(exc)) from exc
    for m in history:
        print(json.dumps(m))
    print(f"checkpoint: {Path(args.out) / 'vqvae.pt'}")
    return 0
