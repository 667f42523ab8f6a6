"""A planner served elsewhere: an OpenAI-compatible chat-completions endpoint (vLLM,
`transformers serve`, ...). The bearer token comes from an environment variable and is never
logged; each call has a timeout and is retried with exponential backoff; a call that still fails
raises `EndpointError`, which the reasoning stage turns into a counted fallback plan."""
from __future__ import annotations

import json
import logging
import os
import time
import urllib.error
import urllib.request
from typing import Any

log = logging.getLogger(__name__)


class EndpointError(RuntimeError):
    """The endpoint gave no usable answer after all retries."""


def completions_url(url: str) -> str:
    """Accept the server's base (`http://host:8000/v1`) or the full chat-completions URL."""
    url = url.rstrip("/")
    return url if url.endswith("/chat/completions") else url + "/chat/completions"


class EndpointClient:
    def __init__(self, url: str, model: str, token_env: str | None = None, timeout: float = 60.0,
                 retries: int = 3, backoff: float = 1.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"planner endpoint must be an http(s) URL, got {url!r}")
        if timeout <= 0 or retries < 0 or backoff < 0:
            raise ValueError("planner timeout must be > 0, retries and backoff ≥ 0")
        self.url, self.model = completions_url(url), model
        self.token_env, self.timeout = token_env, timeout
        self.retries, self.backoff = retries, backoff
        self.calls = 0      # HTTP requests made, retries included

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        token = os.environ.get(self.token_env) if self.token_env else None
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def chat(self, messages: list[dict[str, Any]], max_tokens: int) -> str:
        """The first choice's message text (greedy: temperature 0, fixed seed)."""
        body = json.dumps({"model": self.model, "messages": messages, "temperature": 0,
                           "seed": 0, "max_tokens": max_tokens}).encode()
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            self.calls += 1
            request = urllib.request.Request(self.url, data=body, headers=self._headers(),
                                             method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    answer = json.loads(response.read())
                return str(answer["choices"][0]["message"]["content"])
            except urllib.error.HTTPError as exc:
                last = f"HTTP {exc.code} {exc.reason}"
                if exc.code < 500 and exc.code != 429:   # the request itself is wrong: no retry
                    break
            except (urllib.error.URLError, TimeoutError, OSError) as exc:
                last = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                last = f"malformed response ({type(exc).__name__})"
            log.warning("planner endpoint %s: attempt %d failed: %s", self.url, attempt + 1, last)
        raise EndpointError(f"planner endpoint {self.url} failed: {last}")
