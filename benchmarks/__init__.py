"""Benchmark scripts (`python benchmarks/bench_*.py`, from any folder); `gpu_suite`, which reuses
the others' code, runs as `python -m benchmarks.gpu_suite` from the repository root."""
