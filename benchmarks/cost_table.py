"""GPU-hours and cost of a MolmoAct-style build (`--stages actions,depth,trace,reasoning`) of whole
datasets, from the end-to-end figure of `benchmarks/gpu_suite.py`:

    GPU-hours = dataset steps / (steps per second measured end to end on one GPU) / 3600
    cost      = GPU-hours × price per GPU-hour

The end-to-end figure is the real command on generated 256-px episodes with real-size random
models, so it includes reading, every stage and writing; frames of these datasets are 256×256 or
256×320 (same model input: Depth Anything resizes to 518 on the short side).
"""
from __future__ import annotations

from typing import Any

# name: (episodes, steps, where the figure comes from)
DATASETS: dict[str, tuple[int, int, str]] = {
    "fractal20220817_data": (87_212, 3_786_400, "Open-X fractal20220817_data 0.1.0"),
    "bridge_dataset": (60_096, 2_100_000,
                       "BridgeData V2 paper's trajectories; steps ≈ 35 per trajectory (estimate)"),
    "LIBERO (4 suites, no_noops)": (1_693, 273_465,
                                    "libero_{10,goal,object,spatial}_no_noops: 379+428+454+432"),
}
NOT_MEASURED = "not measured"


def gpu_hours(steps: int, steps_per_s: float) -> float:
    """Hours of one GPU to push `steps` steps through the build at `steps_per_s`."""
    if steps_per_s <= 0:
        raise ValueError(f"steps per second must be positive, got {steps_per_s}")
    return steps / steps_per_s / 3600


def cost_rows(end_to_end: dict[str, Any] | None, usd_per_gpu_hour: float) -> list[dict[str, Any]]:
    """One row per dataset; GPU-hours and cost are NOT_MEASURED unless `end_to_end` (the suite's
    part) holds a measured `steps_per_s` on a GPU."""
    rate = (end_to_end or {}).get("steps_per_s")
    measured = bool(rate) and (end_to_end or {}).get("device_type") == "cuda"
    rows = []
    for name, (episodes, steps, source) in DATASETS.items():
        hours = gpu_hours(steps, rate) if measured else None
        rows.append({"dataset": name, "episodes": episodes, "steps": steps, "source": source,
                     "gpu_hours": hours,
                     "usd": hours * usd_per_gpu_hour if hours is not None else None})
    return rows


def markdown(rows: list[dict[str, Any]], usd_per_gpu_hour: float, device: str) -> str:
    lines = [f"| dataset | episodes | steps | GPU-hours ({device}) | cost at "
             f"${usd_per_gpu_hour:.2f}/GPU-hour |", "|---|---:|---:|---:|---:|"]
    for r in rows:
        hours = NOT_MEASURED if r["gpu_hours"] is None else f"{r['gpu_hours']:,.1f}"
        usd = NOT_MEASURED if r["usd"] is None else f"${r['usd']:,.0f}"
        lines.append(f"| {r['dataset']} | {r['episodes']:,} | {r['steps']:,} | {hours} | {usd} |")
    return "\n".join(lines)
