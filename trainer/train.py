"""Fine-tune a vision-language model on armdata shards to answer depth → trace → action.

One process:  armdata train --data OUT1:0.6,OUT2:0.4 --out runs/x
Many GPUs:    torchrun --nproc-per-node 8 -m armdata.trainer.train --data ... --out runs/x

Read top to bottom: options, setup (distributed, model, tokens, data), then the loop —
forward on answer tokens only, accumulate, clip, step, log, evaluate, checkpoint.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from armdata.errors import UsageError
from armdata.trainer.checkpoint import (check_out, clear, find_resume, rng_state, run_identity,
                                save_checkpoint, set_rng_state)
from armdata.trainer.mixtures import data_specs
from armdata.trainer.data import StreamingLoader, list_shards, loader_state, open_source, parse_data
from armdata.trainer.metrics import EvalSums, add_batch
from armdata.trainer.sample_form import (SampleOptions, add_sample_arguments, check_stages,
                                         sample_options)
from armdata.trainer.samples import IGNORE, Formatter
from armdata.trainer.tokens import add_answer_tokens, token_tables

log = logging.getLogger(__name__)   # armdata.trainer.train: shown by armdata's log filter

# Apache-2.0, 2.2 B parameters, Qwen2 vocabulary (action ids of SPEC §4 stay meaningful).
DEFAULT_MODEL = "Qwen/Qwen2-VL-2B-Instruct"
TRAINER_FILE = "armdata_trainer.json"      # sample options beside a saved model, read by predict
STATS_FILE = "dataset_statistics.json"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data",
                   help="armdata outputs as path[:weight],... (local, gs://, hf://datasets/ORG/NAME)")
    p.add_argument("--mixture", help="instead of --data: a mixture of configs/mixtures/ (e.g. "
                                     "oxe_magic_soup) or a YAML path, read from --data-root")
    p.add_argument("--data-root", help="directory holding one build per dataset, DIR/<dataset>")
    p.add_argument("--out", required=True, help="run directory (metrics, checkpoints, model)")
    p.add_argument("--model", default=DEFAULT_MODEL, help="Hub id or path of an image-text-to-text model")
    p.add_argument("--eval-data", help="held-out datasets (path,...); default: --holdout-shards")
    p.add_argument("--holdout-shards", type=int, default=1,
                   help="last K shards of each dataset with more than K shards are held out")
    p.add_argument("--max-steps", type=int, default=1000)
    p.add_argument("--micro-batch", type=int, default=4, help="samples per rank per forward")
    p.add_argument("--accum", type=int, default=1, help="gradient accumulation steps")
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--min-lr-ratio", type=float, default=0.1)
    p.add_argument("--warmup", type=int, default=100, help="linear warmup steps")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--clip", type=float, default=1.0, help="gradient norm clip (0: off)")
    p.add_argument("--workers", type=int, default=2, help="loader worker processes per rank")
    p.add_argument("--block", type=int, default=4, help="shuffle buffer, in row groups")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lora", type=int, default=0, help="LoRA rank (0: full fine-tune)")
    p.add_argument("--grad-checkpointing", action="store_true")
    add_sample_arguments(p)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--eval-every", type=int, default=200)
    p.add_argument("--eval-batches", type=int, default=20)
    p.add_argument("--save-every", type=int, default=500)
    p.add_argument("--resume", action="store_true",
                   help="continue from the newest valid checkpoint of the run in --out (same "
                        "data, model and training options)")
    p.add_argument("--overwrite", action="store_true",
                   help="start over in a non-empty --out: delete its checkpoints, metrics, "
                        "tensorboard and model")
    p.add_argument("--stop-after", type=int,
                   help="stop (with a checkpoint) after this step; the schedule still spans "
                        "--max-steps (a job's time slice)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")


class AnswerLoss(torch.nn.Module):
    """Cross-entropy on answer tokens; the vocabulary projection runs on those positions only
    (a 150k vocabulary over every prompt and image token would dominate memory)."""

    def __init__(self, model: Any):
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        base = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        inputs = {k: v for k, v in batch.items() if k not in ("labels", "kinds", "meta", "loader")}
        hidden = base.model(**inputs, use_cache=False).last_hidden_state
        labels = batch["labels"][:, 1:]
        mask = labels != IGNORE
        logits = base.get_output_embeddings()(hidden[:, :-1][mask]).float()
        target = labels[mask]
        loss = torch.nn.functional.cross_entropy(logits, target)
        rows = torch.arange(labels.shape[0], device=labels.device)[:, None].expand_as(labels)[mask]
        return loss, {"pred": logits.argmax(-1), "target": target, "rows": rows,
                      "kinds": batch["kinds"][:, 1:][mask], "loss_sum": loss.detach() * target.numel()}


def lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Linear warmup to 1, then cosine down to min_ratio at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def to_device(batch: dict[str, Any], device: str) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def save_model(model: Any, processor: Any, path: Path, options: SampleOptions,
               stats: dict[str, Any]) -> None:
    model.save_pretrained(path, safe_serialization=True)
    processor.save_pretrained(path)
    (path / TRAINER_FILE).write_text(json.dumps(options.to_json(), indent=1))
    (path / STATS_FILE).write_text(json.dumps(stats, indent=1))


def load_model(name: str, resume: Path | None, lora: int, device: str) -> tuple[Any, Any]:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    source = resume / "model" if resume is not None and not lora else name
    processor = AutoProcessor.from_pretrained(resume / "model" if resume else name)
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    model = AutoModelForImageTextToText.from_pretrained(source, dtype=dtype)
    add_answer_tokens(processor.tokenizer, model)
    if lora:
        from peft import LoraConfig, PeftModel, get_peft_model

        if resume is not None:
            model = PeftModel.from_pretrained(model, resume / "model", is_trainable=True)
        else:
            # New depth-token rows must learn, so embeddings and head train in full.
            model = get_peft_model(model, LoraConfig(
                r=lora, lora_alpha=2 * lora, target_modules="all-linear",
                modules_to_save=["embed_tokens", "lm_head"]))
    return model.to(device), processor


def evaluate(model: AnswerLoss, make_loader: Any, steps: int, device: str, ctx: Any,
             tables: dict[str, Any], tokenizer: Any, stats: dict[str, Any]) -> dict[str, float]:
    sums = EvalSums()
    model.eval()
    with torch.no_grad():
        for i, batch in enumerate(make_loader()):
            if i >= steps:
                break
            with ctx:
                _, out = model(to_device(batch, device))
            add_batch(sums, float(out["loss_sum"]), out["pred"].cpu(), out["target"].cpu(),
                      out["kinds"].cpu(), out["rows"].cpu(), batch["meta"], tables, tokenizer, stats)
    model.train()
    keys = sorted(sums.sums)
    if dist.is_initialized():   # same keys on every rank: gather them first
        every: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(every, keys)
        keys = sorted(set().union(*every))
        vec = sums.vector(keys)
        dist.all_reduce(vec)
    else:
        vec = sums.vector(keys)
    return sums.result(dict(zip(keys, vec.tolist())))


def main(argv: list[str] | None = None, args: argparse.Namespace | None = None) -> int:
    if args is None:
        parser = argparse.ArgumentParser(prog="armdata.trainer.train", description=__doc__)
        add_arguments(parser)
        args = parser.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # --- distributed: torchrun sets RANK/WORLD_SIZE; gloo on CPU, nccl on GPU --------------------
    distributed = "RANK" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1
    rank, world = (int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])) if distributed else (0, 1)
    device = args.device
    master = rank == 0
    logging.basicConfig(level=logging.INFO if master else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    out = Path(args.out)
    # Every rank checks --out and picks the checkpoint before any rank writes (process group
    # start is a barrier), so all refuse alike.
    stale = check_out(out, args.resume, args.overwrite)
    # --- data -----------------------------------------------------------------------------------
    specs, balance = data_specs(args)
    # Datasets with too few shards to hold some out train on all of them.
    holdout = {p: 0 if args.eval_data or len(list_shards(p)) <= args.holdout_shards
               else args.holdout_shards for p, _ in specs}
    sources = [open_source(p, w, holdout[p]) for p, w in specs]
    for s in sources if balance else []:   # Octo/OpenVLA balance_weights
        s.weight *= s.rows
    eval_sources = ([open_source(p, 1.0) for p, _ in parse_data(args.eval_data)] if args.eval_data
                    else [open_source(p, 1.0, holdout[p], eval_part=True)
                          for p, _ in specs if holdout[p]])
    options = sample_options(args)
    for source in sources + eval_sources:
        check_stages(source.root, source.stages, options)
    run = run_identity(args, world, sources, eval_sources, options.to_json())
    found = find_resume(out, run) if args.resume else None
    resume, state = found if found else (None, None)
    if distributed:
        if device.startswith("cuda"):
            device = f"cuda:{int(os.environ['LOCAL_RANK'])}"
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    # --- model, tokens, samples (loaded before --out is touched: a model that fails to load
    # leaves no folder behind) --------------------------------------------------------------------
    torch.manual_seed(args.seed)
    model, processor = load_model(args.model, resume, args.lora, device)
    if master:
        clear(stale)
    if distributed:
        dist.barrier()
    out.mkdir(parents=True, exist_ok=True)
    if args.grad_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    tables = token_tables(processor.tokenizer)
    net = AnswerLoss(model)
    if distributed:
        net = torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[device] if device.startswith("cuda") else None,
            find_unused_parameters=True)   # e.g. a vision tower's pooler feeds no answer

    stats = {k: v for s in sources + eval_sources for k, v in s.stats.items()}
    if master:
        log.info("train: %s; eval: %s", ", ".join(f"{s.root} ({s.rows} rows, weight {s.weight})"
                                                   for s in sources),
                 ", ".join(f"{s.root} ({s.rows} rows)" for s in eval_sources) or "none")

    def make_formatter() -> Formatter:
        return Formatter(processor, tables, options)

    def data(srcs: list, loader: dict | None, epochs: int | None) -> torch.utils.data.DataLoader:
        ds = StreamingLoader(srcs, make_formatter, args.micro_batch, rank=rank, world=world,
                             workers=args.workers, seed=args.seed, block=args.block,
                             shuffle=epochs is None, epochs=epochs, state=loader,
                             pad_id=processor.tokenizer.pad_token_id)
        return torch.utils.data.DataLoader(ds, batch_size=None, num_workers=args.workers,
                                           pin_memory=device.startswith("cuda"))

    # --- optimizer, schedule, resume ------------------------------------------------------------
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=args.lr,
                                  betas=(0.9, 0.95), fused=True)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, args.warmup, args.max_steps, args.min_lr_ratio))
    step, received, batches = 0, {}, 0
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        step, batches = state["step"], state["loader"]["batches"]
        received = {int(g): {"draws": d, "counters": state["loader"]["counters"].get(g, {})}
                    for g, d in state["loader"]["draws"].items()}
        log.info("resumed from %s at step %d", resume, step)
    loader_start = state["loader"] if state is not None else None

    # --- logging --------------------------------------------------------------------------------
    metrics_file = (out / "metrics.jsonl").open("a") if master else None
    tb = None
    if master:
        try:
            from torch.utils.tensorboard import SummaryWriter
            tb = SummaryWriter(str(out / "tensorboard"))
        except ImportError:
            pass

    def record(entry: dict[str, Any]) -> None:
        if master:
            metrics_file.write(json.dumps(entry) + "\n")
            metrics_file.flush()
            if tb is not None:
                for k, v in entry.items():
                    if isinstance(v, (int, float)) and k != "step":
                        tb.add_scalar(k, v, entry["step"])

    def gather_state() -> dict[str, Any]:
        mine = {g: r for g, r in received.items() if g // max(1, args.workers) == rank}
        if distributed:
            every: list[Any] = [None] * world
            dist.all_gather_object(every, mine)
            mine = {g: r for part in every for g, r in part.items()}
        return loader_state(batches, mine, args.seed)

    def checkpoint() -> None:
        loader = gather_state()
        if master:
            path = save_checkpoint(
                out, step, run, {"optimizer": optimizer.state_dict(),
                                 "scheduler": scheduler.state_dict(), "loader": loader,
                                 "rng": rng_state()},
                lambda path: save_model(model, processor, path, options, stats))
            log.info("checkpoint %s", path)
        if distributed:
            dist.barrier()

    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.startswith("cuda")
                else nullcontext())
    stream = iter(data(sources, loader_start, None))
    progress = None
    if master and sys.stderr.isatty():
        from tqdm import tqdm
        progress = tqdm(total=args.max_steps, initial=step, unit="step")
    net.train()
    t0, samples_since = time.perf_counter(), 0
    # --- the loop -------------------------------------------------------------------------------
    stop = min(args.max_steps, args.stop_after or args.max_steps)
    while step < stop:
        loss_sum = 0.0
        for micro in range(args.accum):
            batch = next(stream)
            batches += 1
            received[batch["loader"]["stream"]] = batch["loader"]
            samples_since += batch["input_ids"].shape[0]
            sync = micro == args.accum - 1 or not distributed
            with (nullcontext() if sync else net.no_sync()), autocast:
                loss, _ = net(to_device(batch, device))
            (loss / args.accum).backward()
            loss_sum += float(loss.detach()) / args.accum
        if args.clip:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, args.clip))
        else:
            grad_norm = float("nan")
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        if distributed:   # the logged loss is the global batch's
            t = torch.tensor([loss_sum], device=device)
            dist.all_reduce(t)
            loss_sum = float(t) / world
        if progress is not None:
            progress.update(1)
            progress.set_postfix(loss=f"{loss_sum:.4f}")
        if step % args.log_every == 0 or step == args.max_steps:
            dt = time.perf_counter() - t0
            entry = {"step": step, "loss": loss_sum, "lr": scheduler.get_last_lr()[0],
                     "grad_norm": grad_norm, "samples_per_s": samples_since * world / dt}
            counters: dict[str, int] = {}
            for r in received.values():
                for k, v in r["counters"].items():
                    counters[k] = counters.get(k, 0) + v
            entry.update({f"rows/{k}": v for k, v in counters.items()})
            record(entry)
            if master and progress is None:
                log.info("step %d loss %.4f lr %.2e %.1f samples/s", step, loss_sum, entry["lr"],
                         entry["samples_per_s"])
            t0, samples_since = time.perf_counter(), 0
        if eval_sources and (step % args.eval_every == 0 or step == args.max_steps):
            # The unwrapped model: ranks may hold different numbers of eval batches, and DDP's
            # forward would synchronise buffers on each.
            result = evaluate(net.module if distributed else net, lambda: data(eval_sources, None, 1),
                              args.eval_batches, device,
                              autocast, tables, processor.tokenizer, stats)
            record({"step": step, **{f"eval/{k}": v for k, v in result.items()}})
            if master:
                log.info("eval step %d: %s", step, ", ".join(f"{k} {v:.4f}" for k, v in result.items()))
        if step % args.save_every == 0 or step == stop:
            checkpoint()
    # --- the model to use -----------------------------------------------------------------------
    if master and step == args.max_steps:
        final = model.merge_and_unload() if args.lora else model
        save_model(final, processor, out / "model", options, stats)
        log.info("model saved to %s", out / "model")
    if metrics_file is not None:
        metrics_file.close()
    if tb is not None:
        tb.close()   # TensorBoard buffers events; `armdata` exits without interpreter teardown
    if distributed:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except UsageError as exc:     # as `armdata train` prints it
        print(f"trainer.train: error: {exc}", file=sys.stderr)
        sys.exit(2)
