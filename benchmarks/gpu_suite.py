"""GPU throughput suite: every model stage at its published size (random weights: speed does not
depend on the values), batched against one at a time, bf16 against fp32, one optimizer step of the
trainer, and the real `armdata build` end to end; one JSON and one Markdown table (with the
dataset cost rows of `benchmarks/cost_table.py`) in --out.

    python -m benchmarks.gpu_suite --device cuda --out DIR [--cotracker-repo DIR]   (≤ 8 min, H100)
    python -m benchmarks.gpu_suite --device cpu --tiny --out DIR                     (smoke, < 60 s)

from the repository root (it imports other benchmarks' code as `benchmarks.*`) with the checkout
installed (`pip install -e .`).

Parts run in order (the trainer reads the rows the end-to-end part built), each under its own
time limit (--part-timeout NAME=SECONDS); a part that fails or runs out of time is recorded in the
JSON with its reason and the others still run. `--parts` picks some.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import logging
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator
from unittest import mock

import numpy as np
import torch

from benchmarks import cost_table, suite_models
from benchmarks.bench_depth import PeakMemory
from benchmarks.bench_reasoning import make_episodes, run_stage

REPO = Path(__file__).resolve().parents[1]

log = logging.getLogger("gpu_suite")

# bf16 dense tensor peak without sparsity, FLOP/s (vendor data sheets; H100/H200 SXM).
BF16_PEAK = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12}
# Seconds per part on the GPU run (the sum stays under 8 minutes); --tiny uses one limit for all.
TIMEOUTS = {"depth": 100, "captioner": 80, "detector": 30, "cotracker": 30, "end_to_end": 140,
            "trainer": 80}
PARTS = tuple(TIMEOUTS)


@dataclass
class Sizes:
    """How much each part does: the GPU run's, or the smoke run's."""
    depth_archs: tuple[str, ...]
    frames: int                 # depth / detector frames
    frame_px: int
    depth_batch: int
    episodes: int               # captioner / planner
    batch_episodes: int
    new_tokens: int
    detector_batch: int
    track_frames: int
    e2e_episodes: int
    e2e_steps: int
    e2e_stage_sets: tuple[str, ...]
    train_steps: int
    micro_batch: int


GPU = Sizes(("small", "base", "large"), 64, 256, 16, 16, 8, 64, 16, 60, 50, 30,
            ("actions", "actions,depth", "actions,depth,trace", "actions,depth,trace,reasoning"),
            3, 8)
TINY = Sizes(("tiny",), 2, 32, 2, 2, 2, 4, 2, 8, 2, 6,
             ("actions", "actions,depth,trace,reasoning"), 1, 2)


class PartTimeout(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    """Raise PartTimeout in the main thread after `seconds` (checked between Python bytecodes,
    i.e. after the running kernel returns)."""
    def expire(signum: int, frame: Any) -> None:
        raise PartTimeout(f"ran past its {seconds} s limit")
    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


class Utilisation:
    """Mean GPU utilisation (%) while the block runs, sampled every 50 ms through NVML
    (`torch.cuda.utilization`); None on CPU or without NVML."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.samples = device, []
        self._stop = threading.Event()

    def __enter__(self) -> "Utilisation":
        if self.device.type == "cuda":
            try:
                torch.cuda.utilization(self.device)
            except Exception:   # no NVML bindings: leave utilisation unmeasured
                return self
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.samples.append(torch.cuda.utilization(self.device))
            time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if hasattr(self, "_thread"):
            self._thread.join()

    @property
    def mean(self) -> float | None:
        return float(np.mean(self.samples)) if self.samples else None


def measure(run: Callable[[], Any], units: int, device: torch.device) -> dict[str, Any]:
    """Units/s, peak memory (CUDA allocation or process RSS, MiB) and GPU utilisation of one
    call of `run`; its return value under "result"."""
    with PeakMemory(device) as mem, Utilisation(device) as util:
        start = time.perf_counter()
        result = run()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - start
    return {"per_s": units / seconds, "seconds": seconds, "peak_mib": mem.mib,
            "gpu_util_pct": util.mean, "result": result}


def figures(m: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in m.items() if k != "result"}


@dataclass
class Context:
    device: torch.device
    sizes: Sizes
    tiny: bool
    work: Path
    cotracker_repo: str | None
    results: dict[str, Any]

    @property
    def arch_for_build(self) -> str:
        return "tiny" if self.tiny else "base"   # the depth stage's default (V2 Base)


def frames(n: int, px: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, px, px, 3), dtype=np.uint8)


# --- 1. depth → tokens ------------------------------------------------------------------------
def precision(device: torch.device, bf16: bool) -> Any:
    """The depth stage's autocast (models.depth_anything.autocast) forced to bf16 or fp32."""
    ctx = (lambda d: torch.autocast(device.type, dtype=torch.bfloat16)) if bf16 \
        else (lambda d: contextlib.nullcontext())
    return mock.patch("armdata.models.depth_anything.autocast", ctx)


def part_depth(ctx: Context) -> dict[str, Any]:
    from armdata.models.depth_anything import ARCHITECTURES, depth_anything_config, random_depth_model
    from armdata.models.vqvae import VQVAE
    from armdata.testing.tiny_models import TINY_DEPTH
    from armdata.transforms.depth import depth_to_codes

    s, device = ctx.sizes, ctx.device
    x = torch.from_numpy(frames(s.frames, s.frame_px)).to(device)
    torch.manual_seed(0)
    vqvae = VQVAE().to(device).eval()
    out: dict[str, Any] = {"frames": s.frames, "frame_px": s.frame_px, "batch": s.depth_batch}
    for arch in s.depth_archs:
        model = random_depth_model(depth_anything_config(
            **(TINY_DEPTH if arch == "tiny" else ARCHITECTURES[arch]))).to(device)
        row: dict[str, Any] = {"parameters": suite_models.parameters(model)}
        codes = {}
        for name, bf16 in (("fp32", False), ("bf16", True)):
            for batch in (1, s.depth_batch):
                def run(batch: int = batch) -> torch.Tensor:
                    with torch.inference_mode():
                        return torch.cat([depth_to_codes(vqvae, x[i:i + batch], "rgb", model)[1]
                                          for i in range(0, len(x), batch)]).cpu()
                with precision(device, bf16):
                    with torch.inference_mode():   # warm-up: kernels and allocator, this shape
                        depth_to_codes(vqvae, x[:batch], "rgb", model)
                    m = measure(run, len(x), device)
                row[f"{name}_batch{batch}"] = figures(m)
                codes[name] = m["result"]
        row["codes_equal_bf16_fp32"] = float((codes["fp32"] == codes["bf16"]).float().mean())
        out[arch] = row
        model = None   # free this size before the next one loads
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return out


# --- 2. captioner and planner -----------------------------------------------------------------
def reasoning_stage(parts: tuple[str, ...], batch: int, ctx: Context, **models: str) -> Any:
    from armdata.transforms.reasoning import ReasoningStage

    stage = ReasoningStage(parts=parts, captioner_batch_size=batch,
                           captioner_max_new_tokens=ctx.sizes.new_tokens,
                           planner_max_new_tokens=ctx.sizes.new_tokens, planner_retries=0,
                           device=ctx.device.type, **models)
    stage.setup()
    return stage


def part_captioner(ctx: Context) -> dict[str, Any]:
    s = ctx.sizes
    vlm = str(suite_models.chat_vlm(ctx.work / "captioner", ctx.tiny, s.new_tokens))
    llm = str(suite_models.text_llm(ctx.work / "planner", ctx.tiny, s.new_tokens))
    episodes = make_episodes(s.episodes, 8, size=s.frame_px)
    out: dict[str, Any] = {"episodes": s.episodes, "new_tokens": s.new_tokens,
                           "batch_episodes": s.batch_episodes,
                           "model": "LLaVA layout at Qwen3-VL-2B's dimensions" if not ctx.tiny
                           else "tiny"}
    for part, models in (("caption", {"captioner_model": vlm}),
                         ("plan", {"planner_model": llm, "captioner_model": vlm})):
        for batch in (1, s.batch_episodes):
            stage = reasoning_stage(("motion", part), batch, ctx, **models)
            run_stage(stage, episodes[:batch], batch)   # warm-up
            stage.counters.clear()
            m = measure(lambda: run_stage(stage, episodes, batch), len(episodes), ctx.device)
            out[f"{part}_batch{batch}"] = {**figures(m), "episodes_per_s": m["per_s"],
                                           "calls": int(stage.counters[f"{part}_calls"])}
    return out


# --- 3. detector ------------------------------------------------------------------------------
def part_detector(ctx: Context) -> dict[str, Any]:
    from armdata.models.detector import load_detector

    s = ctx.sizes
    detector = load_detector(str(suite_models.detector(ctx.work / "detector", ctx.tiny)),
                             ctx.device)
    x = frames(s.frames, s.frame_px)
    phrases = ["cup", "sink", "robot gripper", "towel"]
    out: dict[str, Any] = {"frames": s.frames, "frame_px": s.frame_px,
                           "parameters": suite_models.parameters(detector.model)}
    for batch in (1, s.detector_batch):
        detector.detect(x[:batch], phrases)   # warm-up
        m = measure(lambda: [detector.detect(x[i:i + batch], phrases)
                             for i in range(0, len(x), batch)], len(x), ctx.device)
        out[f"batch{batch}"] = figures(m)
    return out


# --- 4. CoTracker3 ----------------------------------------------------------------------------
def part_cotracker(ctx: Context) -> dict[str, Any]:
    if not ctx.cotracker_repo:
        return {"skipped": "CoTracker3's code is not installed (no pip package provides it; the "
                           "project loads it through torch.hub): pass --cotracker-repo DIR, a "
                           "clone of facebookresearch/co-tracker"}
    from armdata.models.trackers import CoTrackerTracker

    s = ctx.sizes
    offline = torch.hub.load(ctx.cotracker_repo, "cotracker3_offline", source="local",
                             trust_repo=True, pretrained=False).to(ctx.device).eval()
    tracker = CoTrackerTracker(offline, None, ctx.device, offline_max_frames=s.track_frames)
    clip = frames(s.track_frames, s.frame_px)
    seed = (s.frame_px / 2, s.frame_px / 2)
    tracker.track(clip[:8], 0, seed)   # warm-up
    m = measure(lambda: tracker.track(clip, 0, seed), len(clip), ctx.device)
    return {"frames": s.track_frames, "frame_px": s.frame_px,
            "parameters": suite_models.parameters(offline), **figures(m)}


# --- 6. end to end ----------------------------------------------------------------------------
def build_flags(ctx: Context) -> list[str]:
    from armdata.testing.tiny_models import make_tiny_vqvae

    s, models = ctx.sizes, ctx.work / "models"
    models.mkdir(exist_ok=True)
    depth = suite_models.depth_model(models / "depth", ctx.arch_for_build)
    vqvae = make_tiny_vqvae(models / "vqvae.pt")
    captioner = suite_models.chat_vlm(models / "captioner", ctx.tiny, s.new_tokens)
    planner = suite_models.text_llm(models / "planner", ctx.tiny, s.new_tokens)
    detector = suite_models.detector(models / "detector", ctx.tiny)
    device = ctx.device.type
    return ["--depth-model", str(depth), "--vqvae", str(vqvae), "--depth-device", device,
            "--localizer", "projection", "--trace-device", device,
            "--reasoning-parts", "motion,caption,objects,plan", "--captioner-model",
            str(captioner), "--objects-model", str(detector), "--planner-model", str(planner),
            "--captioner-max-new-tokens", str(s.new_tokens), "--planner-max-new-tokens",
            str(s.new_tokens), "--planner-retries", "0", "--reasoning-device", device,
            # one worker process owns the GPU (one per core would load every model per core)
            "--direct_running_mode=in_memory", "--direct_num_workers=1"]


def part_end_to_end(ctx: Context) -> dict[str, Any]:
    from armdata.testing.synthetic import write_synthetic_rlds

    s = ctx.sizes
    source = write_synthetic_rlds(ctx.work / "source", num_episodes=s.e2e_episodes,
                                  num_steps=s.e2e_steps, image_size=(s.frame_px, s.frame_px))
    flags = build_flags(ctx)
    walls: dict[str, float] = {}
    for stages in s.e2e_stage_sets:
        output = ctx.work / "built"
        cmd = [sys.executable, "-m", "armdata.cli", "build", "--config", "armdata_demo",
               "--source", str(source), "--output", str(output), "--overwrite", "--stages",
               stages, *flags]
        start = time.perf_counter()
        done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        walls[stages] = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"`armdata build --stages {stages}` failed: "
                               f"{done.stderr.strip().splitlines()[-1:]}")
    manifest = json.loads((ctx.work / "built" / "manifest.json").read_text())
    steps, episodes = manifest["counts"]["steps_out"], manifest["counts"]["episodes_out"]
    full = walls[s.e2e_stage_sets[-1]]
    # Where the time goes: what each stage set adds to the one before it (whole commands).
    added, before = {}, 0.0
    for stages in s.e2e_stage_sets:
        added[stages.split(",")[-1] if before else "actions (start-up, read, write)"] = \
            walls[stages] - before
        before = walls[stages]
    ctx.results["_built"] = str(ctx.work / "built")
    return {"episodes": episodes, "steps": steps, "frame_px": s.frame_px, "wall_s": full,
            "episodes_per_hour": episodes / full * 3600, "steps_per_s": steps / full,
            "seconds_by_stage": added, "build_wall_s": walls, "device_type": ctx.device.type,
            "command": "armdata build --config armdata_demo --stages " + s.e2e_stage_sets[-1]
                       + " " + " ".join(flags)}


# --- 5. trainer -------------------------------------------------------------------------------
def chip_peak(device: torch.device) -> tuple[float | None, str]:
    if device.type != "cuda":
        return None, "CPU: no bf16 peak"
    name = torch.cuda.get_device_name(device)
    for chip, peak in BF16_PEAK.items():
        if chip in name:
            return peak, f"{chip} bf16 dense {peak / 1e12:.0f} TFLOP/s"
    return None, f"{name}: peak unknown"


def model_flops(model: Any, batch: dict[str, Any], lora: bool) -> float:
    """FLOPs of one forward+backward: k·N·tokens for the decoder (N = its parameters without the
    embedding table; tokens = unpadded sequence positions, image tokens included) plus k·N·patches
    for the vision tower; k = 6 (full: forward 2, input grads 2, weight grads 2) or 4 (LoRA: the
    frozen weights get no weight gradients). Gradient checkpointing's recompute is not counted
    (model FLOPs, not hardware FLOPs)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    lm = base.model.language_model
    n_lm = suite_models.parameters(lm) - lm.embed_tokens.weight.numel()
    vision = base.model.vision_tower
    tokens = int(batch["attention_mask"].sum())
    patches = int(batch["pixel_values"].shape[0]) * vision.config.image_size ** 2 \
        // vision.config.patch_size ** 2
    k = 4 if lora else 6
    return k * (n_lm * tokens + suite_models.parameters(vision) * patches)


def part_trainer(ctx: Context) -> dict[str, Any]:
    from armdata.trainer.data import StreamingLoader, open_source
    from armdata.trainer.samples import Formatter, SampleOptions
    from armdata.trainer.tokens import token_tables
    from armdata.trainer.train import AnswerLoss, load_model, to_device

    built = ctx.results.get("_built")
    if built is None:
        raise RuntimeError("needs the rows the end_to_end part builds (it did not run or failed)")
    s, device = ctx.sizes, ctx.device
    path = suite_models.trainer_vlm(ctx.work / "trainer_model", ctx.tiny)
    peak, peak_note = chip_peak(device)
    out: dict[str, Any] = {"micro_batch": s.micro_batch, "steps": s.train_steps,
                           "peak": peak_note, "rows": built}
    for mode, rank in (("lora", 16), ("full", 0)):
        model, processor = load_model(str(path), None, rank, str(device))
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        tables = token_tables(processor.tokenizer)
        loader = iter(StreamingLoader(
            [open_source(built)], lambda: Formatter(processor, tables, SampleOptions()),
            s.micro_batch, rank=0, world=1, workers=1, seed=0,
            pad_id=processor.tokenizer.pad_token_id))
        batches = [to_device(next(loader), str(device)) for _ in range(s.train_steps + 1)]
        net = AnswerLoss(model).train()
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=1e-5, fused=device.type == "cuda")
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" \
            else contextlib.nullcontext()

        def step(batch: dict[str, Any]) -> None:
            with autocast:
                loss, _ = net(batch)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        step(batches[0])   # warm-up
        timed = batches[1:]
        m = measure(lambda: [step(b) for b in timed], len(timed), device)
        samples = sum(b["input_ids"].shape[0] for b in timed)
        tokens = sum(int(b["attention_mask"].sum()) for b in timed)
        flops = sum(model_flops(model, b, rank > 0) for b in timed)
        out[mode] = {**figures(m), "samples_per_s": samples / m["seconds"],
                     "tokens_per_s": tokens / m["seconds"],
                     "model_tflops_per_s": flops / m["seconds"] / 1e12,
                     "mfu": flops / m["seconds"] / peak if peak else None,
                     "trainable_parameters": sum(p.numel() for p in params),
                     "parameters": suite_models.parameters(model)}
        model = net = optimizer = batches = None   # free before the next mode loads
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return out


PART_FUNCTIONS: dict[str, Callable[[Context], dict[str, Any]]] = {
    "depth": part_depth, "captioner": part_captioner, "detector": part_detector,
    "cotracker": part_cotracker, "end_to_end": part_end_to_end, "trainer": part_trainer}


def run_parts(ctx: Context, parts: list[str], timeouts: dict[str, int]) -> dict[str, Any]:
    """Each part under its own limit; a failure is recorded and the next part runs."""
    for name in parts:
        start = time.perf_counter()
        log.info("part %s (limit %d s)", name, timeouts[name])
        try:
            with time_limit(timeouts[name]):
                ctx.results[name] = {"status": "ok", **PART_FUNCTIONS[name](ctx)}
            if "skipped" in ctx.results[name]:
                ctx.results[name]["status"] = "skipped"
        except Exception as exc:   # recorded in the JSON; the other parts still run
            log.error("part %s failed: %s", name, exc)
            ctx.results[name] = {"status": "failed", "error": f"{type(exc).__name__}: {exc}",
                                 "traceback": traceback.format_exc(limit=6)}
        ctx.results[name]["part_wall_s"] = time.perf_counter() - start
        if ctx.device.type == "cuda":
            torch.cuda.empty_cache()
    ctx.results.pop("_built", None)
    return ctx.results


def fmt(x: Any, digits: int = 1) -> str:
    return "—" if x is None else f"{x:,.{digits}f}" if isinstance(x, float) else str(x)


def markdown(report: dict[str, Any], usd: float) -> str:
    """The suite's figures as tables: one row per measured configuration, then the cost rows."""
    r, meta = report["parts"], report["meta"]
    lines = [f"# armdata GPU suite — {meta['device_name']} — {meta['date']}", "",
             f"`{meta['command']}`", "", "| part | configuration | rate | peak MiB | GPU util % |",
             "|---|---|---:|---:|---:|"]

    def row(part: str, config: str, m: dict[str, Any], unit: str) -> None:
        lines.append(f"| {part} | {config} | {fmt(m['per_s'], 2)} {unit}/s | "
                     f"{fmt(m['peak_mib'], 0)} | {fmt(m['gpu_util_pct'], 0)} |")

    for name, part in r.items():
        if part["status"] != "ok":
            lines.append(f"| {name} | {part['status']}: "
                         f"{part.get('error') or part.get('skipped')} | | | |")
            continue
        if name == "depth":
            for arch, a in part.items():
                if isinstance(a, dict):
                    for key, m in a.items():
                        if isinstance(m, dict):
                            row(name, f"{arch} {key}", m, "frames")
                    lines.append(f"| depth | {arch}: codes equal fp32/bf16 | "
                                 f"{a['codes_equal_bf16_fp32']:.2%} | | |")
        elif name == "captioner":
            for key, m in part.items():
                if isinstance(m, dict):
                    row(name, key, m, "episodes")
        elif name == "detector":
            for key, m in part.items():
                if isinstance(m, dict):
                    row(name, key, m, "frames")
        elif name == "cotracker":
            row(name, f"{part['frames']} frames, {part['frame_px']} px", part, "frames")
        elif name == "trainer":
            for mode in ("lora", "full"):
                m = part[mode]
                row(name, f"{mode}: {fmt(m['tokens_per_s'], 0)} tokens/s, MFU "
                          f"{fmt(m['mfu'] and 100 * m['mfu'], 1)} % ({part['peak']})", m, "samples")
        elif name == "end_to_end":
            by_stage = ", ".join(f"{k} {v:.1f} s" for k, v in part["seconds_by_stage"].items())
            lines.append(f"| end_to_end | {part['episodes']} episodes, {part['steps']} steps, "
                         f"{part['frame_px']} px: {by_stage} | "
                         f"{part['episodes_per_hour']:,.0f} episodes/h | | |")
    rows = cost_table.cost_rows(r.get("end_to_end"), usd)
    lines += ["", "## Cost of a MolmoAct-style build (one GPU)", "",
              cost_table.markdown(rows, usd, meta["device_name"]), ""]
    return "\n".join(lines)


def parse_timeouts(items: list[str]) -> dict[str, int]:
    out = {}
    for item in items:
        name, _, seconds = item.partition("=")
        if name not in TIMEOUTS or not seconds.isdigit():
            raise SystemExit(f"--part-timeout {item!r}: expected NAME=SECONDS, NAME one of "
                             f"{', '.join(PARTS)}")
        out[name] = int(seconds)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=("cuda", "cpu"), required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--tiny", action="store_true", help="tiny models and sizes (smoke run)")
    ap.add_argument("--parts", default=",".join(PARTS))
    ap.add_argument("--part-timeout", action="append", default=[], metavar="NAME=SECONDS")
    ap.add_argument("--cotracker-repo", help="local clone of facebookresearch/co-tracker")
    ap.add_argument("--usd-per-gpu-hour", type=float, default=3.0,
                    help="price for the cost rows (default 3.00, an assumed on-demand H100 rate)")
    ap.add_argument("--workdir", type=Path, help="keep models and data here (default: temporary)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    parts = [p for p in args.parts.split(",") if p]
    if set(parts) - set(PARTS):
        raise SystemExit(f"--parts: unknown {sorted(set(parts) - set(PARTS))}; "
                         f"choose from {', '.join(PARTS)}")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: CUDA is not available")
    device = torch.device(args.device)
    timeouts = {p: 150 if args.tiny else TIMEOUTS[p] for p in PARTS} \
        | parse_timeouts(args.part_timeout)
    if args.tiny:
        torch.set_num_threads(1)   # tiny models: threads cost more than they give
    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        ctx = Context(device, TINY if args.tiny else GPU, args.tiny, work, args.cotracker_repo, {})
        start = time.perf_counter()
        results = run_parts(ctx, [p for p in PARTS if p in parts], timeouts)
    report = {"meta": {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda"
        else f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)",
        "command": "python -m benchmarks.gpu_suite " + " ".join(argv if argv is not None
                                                                else sys.argv[1:]),
        "torch": torch.__version__, "tiny": args.tiny, "wall_s": time.perf_counter() - start,
        "load_avg": os.getloadavg()}, "parts": results}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_suite.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "gpu_suite.md").write_text(markdown(report, args.usd_per_gpu_hour))
    print(f"wrote {args.out / 'gpu_suite.json'} and gpu_suite.md in {report['meta']['wall_s']:.0f} s")
    return 0 if all(p["status"] != "failed" for p in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
