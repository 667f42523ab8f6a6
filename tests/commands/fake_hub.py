"""A Hugging Face Hub stand-in on 127.0.0.1 for offline push tests: the endpoints huggingface_hub's
client calls for create_repo, create_branch, upload_folder (preupload, LFS batch/upload/verify,
tree listing, commit) and repo_info, with Xet disabled. It keeps every repo's files in memory per
branch, checks the bearer token on every call and each LFS upload's sha256, and records the calls.
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlparse

LFS_MIN_BYTES = 10 << 20   # the Hub stores big files (and *.parquet) in LFS


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Repo:
    private: bool
    branches: dict[str, dict[str, bytes]] = field(default_factory=lambda: {"main": {}})
    lfs_paths: set[str] = field(default_factory=set)
    commits: list[str] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)   # tag → commit


class FakeHub:
    def __init__(self, token: str) -> None:
        self.token = token
        self.repos: dict[str, Repo] = {}
        self.lfs: dict[str, bytes] = {}          # sha256 → content
        self.calls: list[tuple[str, str]] = []   # (method, path)
        self.fail_next_commit = False
        self.force_status: int | None = None     # answer every call with it (an outage, a 404)
        self.lock = threading.Lock()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                hub.handle(self, "GET")

            def do_POST(self) -> None:
                hub.handle(self, "POST")

            def do_PUT(self) -> None:
                hub.handle(self, "PUT")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeHub":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- HTTP plumbing ----------------------------------------------------------------------

    @staticmethod
    def body(req: BaseHTTPRequestHandler) -> bytes:
        if req.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(req.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    req.rfile.readline()
                    return out
                out += req.rfile.read(size)
                req.rfile.readline()
        return req.rfile.read(int(req.headers.get("Content-Length") or 0))

    @staticmethod
    def reply(req: BaseHTTPRequestHandler, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        req.send_response(status)
        req.send_header("Content-Type", "application/json")
        req.send_header("Content-Length", str(len(data)))
        req.end_headers()
        req.wfile.write(data)

    def handle(self, req: BaseHTTPRequestHandler, method: str) -> None:
        path = urlparse(req.path).path
        data = self.body(req)
        with self.lock:
            self.calls.append((method, path))
            if self.force_status:
                return self.reply(req, self.force_status, {"error": "forced by the test"})
            if req.headers.get("Authorization") != f"Bearer {self.token}" \
                    and not path.startswith("/lfs-upload/"):
                return self.reply(req, 401, {"error": "Invalid credentials"})
            for pattern, verb, fn in self.routes():
                m = re.fullmatch(pattern, path)
                if m and verb == method:
                    status, payload = fn(data, *map(unquote, m.groups()))
                    return self.reply(req, status, payload)
        self.reply(req, 404, {"error": f"no route {method} {path}"})

    def routes(self) -> list[tuple[str, str, Any]]:
        repo = r"([^/]+/[^/]+)"
        return [
            (r"/api/repos/create", "POST", self.create_repo),
            (r"/api/validate-yaml", "POST", lambda d: (200, {"errors": [], "warnings": []})),
            (rf"/api/datasets/{repo}/branch/([^/]+)", "POST", self.create_branch),
            (rf"/api/datasets/{repo}/preupload/([^/]+)", "POST", self.preupload),
            (rf"/api/datasets/{repo}/tree/([^/]+)", "GET", self.tree),
            (rf"/api/datasets/{repo}/revision/([^/]+)", "GET", self.revision_info),
            (rf"/api/datasets/{repo}/commit/([^/]+)", "POST", self.commit),
            (rf"/api/datasets/{repo}/tag/([^/]+)", "POST", self.create_tag),
            (rf"/datasets/{repo}\.git/info/lfs/objects/batch", "POST", self.lfs_batch),
            (r"/lfs-upload/([0-9a-f]{64})", "PUT", self.lfs_upload),
            (r"/lfs-verify", "POST", self.lfs_verify),
        ]

    # -- endpoints ------------------------------------------------------------------------------

    def create_repo(self, data: bytes) -> tuple[int, Any]:
        body = json.loads(data)
        assert body.get("type") == "dataset", body
        repo_id = f"{body['organization']}/{body['name']}"
        url = f"{self.url}/datasets/{repo_id}"
        if repo_id in self.repos:
            return 409, {"error": "You already created this dataset repo", "url": url}
        # huggingface_hub >= 1.0 sends visibility, 0.x private: the Hub takes both
        self.repos[repo_id] = Repo(private=body.get("visibility") == "private"
                                   or body.get("private") is True)
        return 200, {"url": url}

    def create_branch(self, data: bytes, repo_id: str, branch: str) -> tuple[int, Any]:
        repo = self.repos[repo_id]
        if branch in repo.branches:
            return 409, {"error": "Reference already exists"}
        repo.branches[branch] = dict(repo.branches["main"])
        return 200, {}

    def create_tag(self, data: bytes, repo_id: str, rev: str) -> tuple[int, Any]:
        repo, tag = self.repos[repo_id], json.loads(data)["tag"]
        if tag in repo.tags:
            return 409, {"error": "Reference already exists"}
        repo.tags[tag] = repo.commits[-1]
        return 200, {}

    def preupload(self, data: bytes, repo_id: str, rev: str) -> tuple[int, Any]:
        repo = self.repos[repo_id]
        files = repo.branches[rev]
        out = []
        for f in json.loads(data)["files"]:
            lfs = f["path"].endswith(".parquet") or f["size"] >= LFS_MIN_BYTES
            entry = {"path": f["path"], "uploadMode": "lfs" if lfs else "regular",
                     "shouldIgnore": False}
            if f["path"] in files:
                content = files[f["path"]]
                entry["oid"] = hashlib.sha256(content).hexdigest() \
                    if f["path"] in repo.lfs_paths else git_blob_sha1(content)
            out.append(entry)
        return 200, {"files": out}

    def lfs_batch(self, data: bytes, repo_id: str) -> tuple[int, Any]:
        body = json.loads(data)
        assert body["operation"] == "upload" and "basic" in body["transfers"], body
        objects = []
        for o in body["objects"]:
            entry = {"oid": o["oid"], "size": o["size"]}
            if o["oid"] not in self.lfs:   # already stored: no actions, the client skips it
                entry["actions"] = {"upload": {"href": f"{self.url}/lfs-upload/{o['oid']}"},
                                    "verify": {"href": f"{self.url}/lfs-verify"}}
            objects.append(entry)
        return 200, {"transfer": "basic", "objects": objects}

    def lfs_upload(self, data: bytes, oid: str) -> tuple[int, Any]:
        if hashlib.sha256(data).hexdigest() != oid:
            return 400, {"error": "sha256 mismatch"}
        self.lfs[oid] = data
        return 200, {}

    def lfs_verify(self, data: bytes) -> tuple[int, Any]:
        body = json.loads(data)
        ok = body["oid"] in self.lfs and len(self.lfs[body["oid"]]) == body["size"]
        return (200, {}) if ok else (404, {"error": "object not found"})

    def tree(self, data: bytes, repo_id: str, rev: str) -> tuple[int, Any]:
        repo = self.repos[repo_id]
        return 200, [{"type": "file", "path": p, "size": len(c), "oid": git_blob_sha1(c)}
                     for p, c in sorted(repo.branches[rev].items())]

    def revision_info(self, data: bytes, repo_id: str, rev: str) -> tuple[int, Any]:
        repo = self.repos[repo_id]
        return 200, {"id": repo_id, "sha": repo.commits[-1] if repo.commits else "0" * 40,
                     "private": repo.private,
                     "siblings": [{"rfilename": p} for p in sorted(repo.branches[rev])]}

    def commit(self, data: bytes, repo_id: str, rev: str) -> tuple[int, Any]:
        if self.fail_next_commit:   # simulates a crash between the uploads and the commit
            self.fail_next_commit = False
            return 500, {"error": "simulated failure"}
        repo = self.repos[repo_id]
        files = dict(repo.branches[rev])
        for line in data.splitlines():
            item = json.loads(line)
            value = item["value"]
            if item["key"] == "file":
                files[value["path"]] = base64.b64decode(value["content"])
                repo.lfs_paths.discard(value["path"])
            elif item["key"] == "lfsFile":
                content = self.lfs.get(value["oid"])
                if content is None or len(content) != value["size"]:
                    return 400, {"error": f"LFS object of {value['path']} was never uploaded"}
                files[value["path"]] = content
                repo.lfs_paths.add(value["path"])
            elif item["key"] == "deletedFile":
                files.pop(value["path"])
        repo.branches[rev] = files
        sha = hashlib.sha1(json.dumps(sorted(git_blob_sha1(c) + p for p, c in files.items()))
                           .encode() + str(len(repo.commits)).encode()).hexdigest()
        repo.commits.append(sha)
        return 200, {"commitUrl": f"{self.url}/datasets/{repo_id}/commit/{sha}",
                     "commitOid": sha}
