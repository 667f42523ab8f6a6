"""Device choice: `auto` without CUDA says so once per process and thing, not per call."""
from __future__ import annotations

import logging

import torch

from armdata.models import device


def test_cpu_warning_once_per_process(monkeypatch, caplog):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(device, "_warned", set())
    with caplog.at_level(logging.WARNING, logger="armdata.models.device"):
        for _ in range(3):   # e.g. one call per depth batch or per stage set-up
            assert device.resolve_device("auto", "depth VQ-VAE") == torch.device("cpu")
        device.resolve_device("auto", "tracker")
    assert [r.getMessage() for r in caplog.records] == [
        "CUDA is not available: the depth VQ-VAE runs on CPU (slow)",
        "CUDA is not available: the tracker runs on CPU (slow)"]
