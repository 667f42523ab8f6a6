"""`armdata train` and `armdata predict`, registered into the armdata command."""
from __future__ import annotations

import argparse
import os

import torch


def register(subparsers: argparse._SubParsersAction) -> None:
    from armdata.trainer.train import add_arguments

    p = subparsers.add_parser("train", help="fine-tune a VLM on armdata shards (one process; "
                              "torchrun -m armdata.trainer.train for many)")
    add_arguments(p)
    p.set_defaults(func=run_train)
    p = subparsers.add_parser("predict", help="run a trained model on one image")
    p.add_argument("--model", required=True, help="model or checkpoint directory")
    p.add_argument("--image", required=True)
    p.add_argument("--wrist-image")
    p.add_argument("--instruction", required=True)
    p.add_argument("--stats", help="dataset_statistics.json (default: the one beside the model)")
    p.add_argument("--dataset", help="which dataset's statistics (when the file holds several)")
    p.add_argument("--max-new-tokens", type=int, default=600)
    p.add_argument("--json", action="store_true", help="one-line JSON")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.set_defaults(func=run_predict)


# What train and predict can load without the network.
OFFLINE_MODEL = ("pass a local model directory as --model, e.g. armdata-demo/tiny_vlm (written by "
                 "`armdata demo`)")


def run_train(args: argparse.Namespace) -> int:
    from armdata.errors import UsageError
    from armdata.models.hub import check_models
    from armdata.trainer.data import list_shards
    from armdata.trainer.mixtures import data_specs
    from armdata.trainer.train import main

    try:   # a wrong --data/--mixture is one line, before any model loads
        for path, _ in data_specs(args)[0]:
            list_shards(path)
    except (ValueError, OSError) as exc:
        raise UsageError(str(exc)) from exc
    check_models({"--model": args.model}, OFFLINE_MODEL)
    return main(args=args)


def run_predict(args: argparse.Namespace) -> int:
    from armdata.errors import UsageError
    from armdata.models.hub import check_models
    from armdata.trainer.predict import run

    for flag, path in (("--image", args.image), ("--wrist-image", args.wrist_image),
                       ("--stats", args.stats)):
        if path is not None and not os.path.isfile(path):
            raise UsageError(f"{flag} {path}: no such file")
    check_models({"--model": args.model}, OFFLINE_MODEL)
    return run(args)
