"""The command Beam runs for each local worker when the launcher has a worker server
(`armdata.commands.build.workers`): ask the server to fork a worker with Beam's
environment variables and exit with its status. Standard library only, so it starts in
milliseconds."""
from __future__ import annotations

import json
import os
import socket
import sys

SOCKET_ENV = "ARMDATA_WORKER_SERVER"


def main() -> int:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(os.environ[SOCKET_ENV])
    conn.sendall(json.dumps(dict(os.environ)).encode() + b"\n")
    with conn.makefile("rb") as f:
        status = f.readline()
    if not status:
        print("armdata: error: a forked Beam worker ended without a status", file=sys.stderr)
        return 1
    return int(status)


if __name__ == "__main__":
    sys.exit(main())
