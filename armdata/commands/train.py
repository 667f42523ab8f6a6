"""`armdata train` and `armdata predict`, registered into the armdata command."""
from __future__ import annotations

import argparse

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


def run_train(args: argparse.Namespace) -> int:
    from armdata.errors import UsageError
    from armdata.trainer.mixtures import data_specs
    from armdata.trainer.train import main

    try:
        data_specs(args)   # a wrong --data/--mixture is one line, before any model loads
    except ValueError as exc:
        raise UsageError(str(exc)) from exc

    return main(args=args)


def run_predict(args: argparse.Namespace) -> int:
    from armdata.trainer.predict import run

    return run(args)
