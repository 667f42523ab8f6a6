"""The Hub ids and files armdata loads by default, importable without torch (the CLI shows them
in its help and records them in manifests before any model is loaded), and `check_models`, the
one check of every model argument of a command before its work starts."""
from __future__ import annotations

import os
import socket

DEFAULT_DEPTH_MODEL = "depth-anything/Depth-Anything-V2-Base-hf"   # the reference's (CC-BY-NC-4.0)
SMALL_DEPTH_MODEL = "depth-anything/Depth-Anything-V2-Small-hf"    # Apache-2.0
VQVAE_REPO = "allenai/MolmoAct-7B-D-0812"
VQVAE_FILE = "vae-final.pt"


def hub_host() -> str:
    """The host the Hub client talks to (HF_ENDPOINT, default huggingface.co)."""
    from urllib.parse import urlparse

    return urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co").hostname or ""


def hub_reachable(timeout: float = 2.0) -> bool:
    """One TCP connection to the Hub: the probe that replaces huggingface_hub's five retries per
    file (about 25 s a model) when there is no network."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return False
    try:
        socket.create_connection((hub_host(), 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def check_models(models: dict[str, str | tuple[str, str]], offline: str) -> None:
    """Every model argument of a command (option → Hub id or directory, or (repo id, file)) in
    one pass, before any work: a path must be a model directory (config.json), a Hub model or
    file must be in the local cache or the Hub reachable (one probe for all). Raises UsageError naming every missing model and, in `offline`, what the
    command can do without the network."""
    from armdata.errors import UsageError
    from armdata.models.provenance import looks_like_path

    uncached = []
    for flag, name in models.items():
        if isinstance(name, tuple):
            if not cached(*name):
                uncached.append(f"{flag} (default: {'/'.join(name)} from the Hub)")
            continue
        path = os.path.expanduser(name)
        if os.path.exists(path) or looks_like_path(name):
            if not os.path.isdir(path):
                raise UsageError(f"{flag} {name}: no such model directory"
                                 + (" (it is a file)" if os.path.exists(path) else ""))
            if not os.path.isfile(os.path.join(path, "config.json")) and not os.path.isfile(
                    os.path.join(path, "model", "config.json")):
                raise UsageError(f"{flag} {name} has no config.json: not a model directory")
        elif not cached(name):
            uncached.append(f"{flag} {name}")
    if uncached and not hub_reachable():
        why = "HF_HUB_OFFLINE is set" if os.environ.get("HF_HUB_OFFLINE") else \
            f"{hub_host()} cannot be reached"
        raise UsageError(f"{', '.join(uncached)}: not in the Hugging Face cache and {why}; "
                         f"offline, {offline}")


def cached(repo_id: str, filename: str = "config.json") -> bool:
    """Whether the local Hugging Face cache holds `filename` of `repo_id`."""
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(repo_id, filename), str)
    except ValueError:   # not a valid repo id
        return False
