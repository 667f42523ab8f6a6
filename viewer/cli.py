"""`armdata view OUTPUT`: a static site to look at a built dataset in a browser (overview page
plus one page per episode asked for), optionally served on 127.0.0.1 and exported to Rerun."""
from __future__ import annotations

import argparse
import functools
import http.server
import logging
from pathlib import Path
from typing import Any

from armdata.models.device import DEVICE_CHOICES
from armdata.pipeline.sinks.manifest import load_manifest
from armdata.viewer.site import ViewError, write_site

log = logging.getLogger(__name__)

DEFAULT_EPISODES = 5


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "view", help="a static HTML site to look at a built dataset (overview + episode pages)",
        description="Write a self-contained static site (open DIR/index.html from disk, no "
                    "network needed): an overview of the dataset and one page per episode with "
                    "frames, trace, objects, decoded depth, reasoning and action plots.")
    p.add_argument("output", help="built dataset directory (with manifest.json)")
    p.add_argument("--out", help="site directory (default: OUTPUT-view next to the dataset)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--episodes", type=int, default=DEFAULT_EPISODES,
                       help=f"render the first N kept episodes' pages (default {DEFAULT_EPISODES})")
    which.add_argument("--episode", action="append", metavar="ID",
                       help="render this episode's page (repeatable)")
    p.add_argument("--vqvae", help="VQ-VAE checkpoint to decode the depth tokens with (default: "
                                   "the build's, when it exists on this machine)")
    p.add_argument("--device", choices=DEVICE_CHOICES, default="cpu",
                   help="device for the VQ-VAE decoder (default cpu)")
    p.add_argument("--rerun", action="store_true",
                   help="also write each rendered episode as a Rerun recording (.rrd; needs the "
                        "`view` extra: pip install 'armdata[view]')")
    p.add_argument("--serve", action="store_true", help="serve the site on 127.0.0.1 afterwards")
    p.add_argument("--port", type=int, default=8000, help="port for --serve (default 8000)")
    p.set_defaults(func=run)


def local_vqvae(output: Path, given: str | None) -> str | None:
    """The checkpoint to decode depth with: --vqvae, else the build's when it is a local file."""
    if given:
        if not Path(given).is_file():
            raise ViewError(f"--vqvae {given}: no such file")
        return given
    options = load_manifest(str(output)).get("stage_options", {}).get("depth", {})
    path = (options.get("vqvae") or {}).get("path")
    if path and Path(path).is_file():
        return path
    if path:
        log.info("the build's VQ-VAE %s is not on this machine (give --vqvae): depth maps are "
                 "not decoded", path)
    return None


def depth_decoder(vqvae: str | None, device_name: str) -> Any:
    """rows → {step: uint8 depth map}; no decoding (and no torch import) without a checkpoint."""
    if vqvae is None:
        return lambda rows: {}
    from armdata.models.device import resolve_device
    from armdata.commands.preview import decode_codes

    return functools.partial(decode_codes, vqvae_path=vqvae,
                             device=resolve_device(device_name, "view"))


def serve(directory: Path, port: int) -> None:
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
    with http.server.ThreadingHTTPServer(("127.0.0.1", port), handler) as server:
        print(f"serving {directory} at http://127.0.0.1:{server.server_port}/ (Ctrl-C stops)")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass


def run(args: argparse.Namespace) -> int:
    output = Path(args.output)
    if not (output / "manifest.json").is_file():
        raise ViewError(f"{output} has no manifest.json: not a complete armdata build")
    if args.episodes is not None and args.episodes < 0:
        raise ViewError(f"--episodes must be >= 0, got {args.episodes}")
    out = Path(args.out) if args.out else output.with_name(output.name + "-view")
    decode = depth_decoder(local_vqvae(output, args.vqvae), args.device)
    index, episodes = write_site(output, out, args.episodes, args.episode, decode, args.rerun)
    if args.rerun:
        from armdata.viewer.rerun_export import write_recordings

        for path in write_recordings(output, out / "episodes", episodes):
            print(f"wrote {path}")
    print(f"wrote {index}")
    if args.serve:
        serve(out, args.port)
    return 0
