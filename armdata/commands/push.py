"""`armdata push OUTPUT --repo ORG/NAME`: publish a finished build as a Hugging Face dataset repo.

Only a complete, intact build is pushed: `manifest.json` must exist (the build writes it last),
every file it lists must match its recorded size and sha256, and the folder must hold no other
file and no symlink (manifest paths that are absolute or have `..` are refused). The repo receives exactly the build's files
(shards, statistics, manifest, rejected/) plus the dataset card regenerated with the license and
pretty name, in one `upload_folder` commit. A rerun is cheap: the Hub already holds the uploaded
objects (LFS by sha256), so only missing bytes are sent and unchanged files drop out of the
commit; stale shards of an earlier, different build are deleted in the same commit.

A LeRobot export (`armdata export --format lerobot`: meta/info.json, no manifest.json) is pushed
as it is, its own card included, and the repo is tagged with its codebase_version (v3.0/v2.1),
the tag LeRobot's loader resolves.

The token is read from the environment (`HF_TOKEN`) only; it is never logged or written anywhere.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from armdata.errors import BuildError, causes
from armdata.wording import count
from armdata.pipeline.sinks import storage
from armdata.pipeline.sinks.card import LICENSE_PATH, dataset_card, hub_license, license_text
from armdata.pipeline.sinks.finalize import CARD_PATH, MANIFEST_PATH, STATISTICS_PATH
from armdata.pipeline.sinks.manifest import describe, file_problems, load_manifest

log = logging.getLogger(__name__)

TOKEN_ENV = "HF_TOKEN"
HTTP_HINTS = {401: f"{TOKEN_ENV} is missing, invalid or expired",
              403: f"{TOKEN_ENV} has no write access to this repo",
              404: "check --repo, --revision and HF_ENDPOINT"}


class PushError(BuildError):
    """The build cannot be pushed (incomplete, corrupt, no token)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "push", help="upload a built dataset to the Hugging Face Hub",
        description=f"Verify a finished build and upload it as a dataset repo. The token comes "
                    f"from the {TOKEN_ENV} environment variable only; HF_ENDPOINT selects the Hub.")
    p.add_argument("output", help="a local directory written by `armdata build`, or by "
                                  "`armdata export --format lerobot` (pushed with its card and "
                                  "tagged with its codebase_version)")
    p.add_argument("--repo", required=True, help="dataset repo id, ORG/NAME")
    p.add_argument("--private", action="store_true", help="create the repo private")
    p.add_argument("--revision", help="branch to push to (created if missing; default main)")
    p.add_argument("--license", default=None,
                   help="Hub license id for the card, checked against the Hub's ids before any "
                        "upload (default: the config's `license:`, else other: the source's "
                        "license applies, named in LICENSE.md)")
    p.add_argument("--pretty-name", help="human-readable dataset name for the card")
    p.set_defaults(func=run)


def build_files(output: str) -> tuple[dict[str, Any], list[str]]:
    """The manifest and the repo-relative paths of a complete, intact build (card excluded).
    Raises PushError naming what is wrong."""
    if not storage.is_local(output):
        raise PushError(f"{output}: push uploads a local directory; copy the build locally first")
    try:
        manifest = load_manifest(output)
        problems = file_problems(output, manifest)
    except BuildError as exc:
        raise PushError(str(exc)) from exc
    if problems:
        raise PushError(f"{output}: not the build its manifest.json describes: "
                        f"{describe(problems)}; rebuild before pushing")
    paths = [f["path"] for f in manifest["files"] if f["path"] != CARD_PATH] + [MANIFEST_PATH]
    return manifest, paths


def stage_folder(output: str, paths: list[str], card: str | None, folder: Path,
                 license_md: str | None = None) -> None:
    """The repo's content as symlinks to the output's files plus the card (None: the output
    has its own) and, for license "other", the LICENSE.md it links (nothing is copied)."""
    for rel in paths:
        target = folder / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(os.path.abspath(os.path.join(output, rel)))
    if card is not None:
        (folder / "README.md").write_text(card)
    if license_md is not None:
        (folder / LICENSE_PATH).write_text(license_md)


def lerobot_export(output: str) -> dict[str, Any] | None:
    """The info.json of a LeRobot export (`armdata export --format lerobot`), else None."""
    info = Path(output, "meta", "info.json")
    if Path(output, MANIFEST_PATH).exists() or not info.is_file():
        return None
    return json.loads(info.read_text())


def lerobot_files(output: str) -> list[str]:
    """Every file of a LeRobot export (links refused: they are never followed)."""
    paths = []
    for path in sorted(Path(output).rglob("*")):
        if path.is_symlink():
            raise PushError(f"{path}: a link in the export; push uploads plain files only")
        if path.is_file():
            paths.append(str(path.relative_to(output)))
    return paths


def push(output: str, repo: str, private: bool = False, revision: str | None = None,
         license: str | None = None, pretty_name: str | None = None) -> str:
    """Verify and upload a build, or a LeRobot export (its own card, then the tag of its
    codebase_version, which LeRobot's loader looks for); returns the commit URL."""
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import HTTPError

    info = lerobot_export(output)
    if info is not None:
        paths, card, license_md = lerobot_files(output), None, None
        tag, delete = info["codebase_version"], ["data/*", "videos/*", "meta/*"]
        message = (f"armdata: LeRobot {tag} export, {info['total_episodes']} episodes, "
                   f"{info['total_frames']} frames")
    else:
        manifest, paths = build_files(output)
        try:
            license = hub_license(license, manifest["config"])
        except ValueError as exc:
            raise PushError(str(exc)) from exc
        stats = json.loads(Path(output, STATISTICS_PATH).read_text()) or None
        card = dataset_card(manifest, stats, license=license, pretty_name=pretty_name)
        license_md = license_text(manifest) if license == "other" else None
        # shards of an earlier build with another shard count would break data/train-*
        tag, delete = None, ["data/*", "rejected/*"]
        message = (f"armdata {manifest['armdata_version']}: {manifest['config']['name']}, "
                   f"{manifest['counts']['steps_out']} steps in {count(manifest['num_shards'], 'shard')}")
    token = os.environ.get(TOKEN_ENV)
    if not token:
        raise PushError(f"set {TOKEN_ENV} to a Hub token with write access (it is read from the "
                        f"environment only)")
    endpoint = constants.ENDPOINT
    if urlparse(endpoint).scheme not in ("http", "https") or not urlparse(endpoint).netloc:
        raise PushError(f"HF_ENDPOINT {endpoint!r} is not an http:// or https:// URL")
    api = HfApi(endpoint=endpoint, token=token)
    try:
        url = api.create_repo(repo, repo_type="dataset", private=private, exist_ok=True)
        log.info("repo %s ready", url)
        if revision:
            api.create_branch(repo, branch=revision, repo_type="dataset", exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="armdata-push-") as tmp:
            stage_folder(output, paths, card, Path(tmp), license_md)
            commit = api.upload_folder(
                repo_id=repo, repo_type="dataset", folder_path=tmp, revision=revision,
                delete_patterns=delete, commit_message=message)
        if tag:
            api.create_tag(repo, tag=tag, repo_type="dataset", revision=revision,
                           exist_ok=True)
    except (HTTPError, OSError) as exc:
        raise PushError(hub_error(exc, endpoint)) from exc
    log.info("pushed %d files to %s%s", len(paths) + (card is not None), commit.commit_url,
             f", tagged {tag}" if tag else "")
    return commit.commit_url


def network_errors() -> tuple[type[BaseException], ...]:
    """What a Hub call raises when the request fails: huggingface_hub's HTTPError (httpx's from
    1.0, which covers unreachable hosts) and, before 1.0, any of requests' errors (its
    ConnectionError and Timeout are no HTTPError)."""
    from huggingface_hub.errors import HTTPError

    try:
        from requests import RequestException
    except ImportError:   # huggingface_hub >= 1.0 does not need requests
        return (HTTPError,)
    return (HTTPError, RequestException)


def hub_error(exc: BaseException, endpoint: str) -> str:
    """One line for a failed Hub call: the status and the server's message with a hint, or why
    the endpoint was not reached (the innermost error: the client's wrappers repeat the URL and
    their retry state). Never the token (only the request's method and path)."""
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    if not isinstance(exc, network_errors()):
        return f"push failed: {exc}"
    if status is None:
        root = list(causes(exc))[-1]
        return (f"cannot reach the Hub at {endpoint} ({type(root).__name__}: {root}); check "
                f"HF_ENDPOINT and the network")
    hint = HTTP_HINTS.get(status, "the Hub failed; rerun later (a rerun resumes)"
                          if status >= 500 else "")
    # httpx (huggingface_hub >= 1.0) and requests (before) name these differently
    request = f"{response.request.method} {urlparse(str(response.request.url)).path}"
    said = (getattr(exc, "server_message", None) or getattr(response, "reason_phrase", None)
            or response.reason)
    return f"the Hub at {endpoint} answered {status} to {request}: {said}" + (
        f"; {hint}" if hint else "")


def run(args: argparse.Namespace) -> int:
    url = push(args.output, args.repo, args.private, args.revision, args.license,
               args.pretty_name)
    print(url)
    return 0
