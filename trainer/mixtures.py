"""Named training mixtures (`configs/mixtures/<name>.yaml`) resolved against a data root.

A mixture names datasets (armdata config names) and their sampling weights; `--data-root DIR`
holds one build per dataset at `DIR/<dataset>` (what `armdata build --output DIR/<dataset>`
writes). `balance_by_size: true` multiplies each weight by the dataset's row count, as Octo's and
OpenVLA's loaders do with `balance_weights`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec
import yaml

MIXTURE_DIR = Path(__file__).resolve().parent.parent / "configs" / "mixtures"


@dataclass(frozen=True)
class MixtureSpec:
    name: str
    weights: dict[str, float]          # dataset → weight, in the file's order
    balance_by_size: bool = False


def available_mixtures() -> list[str]:
    return sorted(p.stem for p in MIXTURE_DIR.glob("*.yaml"))


def load_mixture(name: str) -> MixtureSpec:
    """A bundled mixture by name, or a YAML file by path; raises ValueError naming the problem."""
    path = Path(name) if name.endswith((".yaml", ".yml")) else MIXTURE_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(f"unknown mixture {name!r}; bundled: {', '.join(available_mixtures())}, "
                         f"or a path to a YAML file")
    try:
        raw: Any = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from exc
    datasets = raw.get("datasets") if isinstance(raw, dict) else None
    if not isinstance(datasets, dict) or not datasets or not all(
            isinstance(k, str) and isinstance(w, (int, float)) and not isinstance(w, bool)
            and w > 0 for k, w in datasets.items()):
        raise ValueError(f"{path}: datasets must map dataset names to positive weights")
    balance = raw.get("balance_by_size", False)
    if not isinstance(balance, bool):
        raise ValueError(f"{path}: balance_by_size must be true or false")
    return MixtureSpec(str(raw.get("name", path.stem)), {k: float(w) for k, w in datasets.items()},
                       balance)


def resolve(mixture: MixtureSpec, data_root: str) -> list[tuple[str, float]]:
    """[(build directory, weight)] for every dataset of the mixture; raises ValueError naming the
    datasets that have no finished build (manifest.json) under `data_root`."""
    fs, root = fsspec.core.url_to_fs(data_root)
    prefix = data_root.rstrip("/")
    missing = [d for d in mixture.weights if not fs.exists(f"{root.rstrip('/')}/{d}/manifest.json")]
    if missing:
        raise ValueError(f"mixture {mixture.name!r}: no finished build (manifest.json) under "
                         f"{data_root} for {len(missing)} of {len(mixture.weights)} datasets: "
                         f"{', '.join(missing)}")
    return [(f"{prefix}/{d}", w) for d, w in mixture.weights.items()]


def data_specs(args: Any) -> tuple[list[tuple[str, float]], bool]:
    """The training datasets from `--data` or `--mixture` + `--data-root` (exactly one), and
    whether weights are scaled by dataset size. Raises ValueError naming the problem."""
    from armdata.trainer.data import parse_data

    mixture = getattr(args, "mixture", None)
    if bool(args.data) == bool(mixture):
        raise ValueError("give either --data or --mixture NAME --data-root DIR")
    if not mixture:
        if getattr(args, "data_root", None):
            raise ValueError("--data-root is for --mixture")
        return parse_data(args.data), False
    if not args.data_root:
        raise ValueError("--mixture needs --data-root DIR (one build per dataset, DIR/<dataset>)")
    spec = load_mixture(mixture)
    return resolve(spec, args.data_root), spec.balance_by_size
