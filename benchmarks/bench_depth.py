"""Depth → tokens throughput: Depth Anything V2 Small and Base (random weights, the published
architectures' sizes) + the SPEC §2 VQ-VAE, batched (the depth stage's path) against one frame at
a time with the same models in the same run. Prints frames/s, peak memory and the ratio.

    python benchmarks/bench_depth.py --device cpu --frames 16 --batch-size 8
    python benchmarks/bench_depth.py --device cuda --frames 256 --batch-size 32
"""
from __future__ import annotations

import argparse
import threading
import time
from typing import Callable

import numpy as np
import psutil
import torch

from armdata.models.depth_anything import ARCHITECTURES, depth_anything_config, random_depth_model
from armdata.models.device import resolve_device
from armdata.models.vqvae import VQVAE
from armdata.transforms.depth import depth_to_codes


class PeakMemory:
    """Peak CUDA allocation, or peak process RSS sampled every 5 ms on CPU (MiB)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            proc = psutil.Process()

            def sample() -> None:
                while not self._stop.is_set():
                    self.peak = max(self.peak, proc.memory_info().rss)
                    time.sleep(0.005)
            self._thread = threading.Thread(target=sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            self.peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self._stop.set()
            self._thread.join()

    @property
    def mib(self) -> float:
        return self.peak / 2**20


def timed(run: Callable[[], None], device: torch.device) -> tuple[float, float]:
    """(seconds, peak MiB) of one run."""
    with PeakMemory(device) as mem:
        start = time.perf_counter()
        run()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - start
    return seconds, mem.mib


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--height", type=int, default=256)
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--archs", default="small,base", help="comma-separated: small, base, large")
    args = ap.parse_args()
    device = resolve_device(args.device, "benchmark")
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (args.frames, args.height, args.width, 3), dtype=np.uint8)
    torch.manual_seed(0)
    vqvae = VQVAE().to(device).eval()
    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}"
          f", {torch.get_num_threads()} threads), {args.frames} frames "
          f"{args.height}x{args.width}, batch {args.batch_size}")

    for arch in args.archs.split(","):
        model = random_depth_model(depth_anything_config(**ARCHITECTURES[arch])).to(device)

        def run(batch: int, model: torch.nn.Module = model) -> Callable[[], None]:
            def go() -> None:
                with torch.inference_mode():
                    for i in range(0, len(frames), batch):
                        x = torch.from_numpy(frames[i:i + batch]).to(device)
                        maps, codes, _ = depth_to_codes(vqvae, x, "rgb", model)
                        codes.cpu()
            return go

        with torch.inference_mode():   # warm-up (kernels, allocator) for both shapes
            for n in (args.batch_size, 1):
                depth_to_codes(vqvae, torch.from_numpy(frames[:n]).to(device), "rgb", model)
        t_loop, m_loop = timed(run(1), device)
        t_batch, m_batch = timed(run(args.batch_size), device)
        n = len(frames)
        print(f"{arch:5s} one-at-a-time: {n / t_loop:8.2f} frames/s  peak {m_loop:8.0f} MiB")
        print(f"{arch:5s} batched ({args.batch_size:3d}): {n / t_batch:8.2f} frames/s  peak "
              f"{m_batch:8.0f} MiB  speed-up x{t_loop / t_batch:.2f}")
        del model


if __name__ == "__main__":
    main()
