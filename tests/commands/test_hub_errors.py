"""`armdata push` turns a failed Hub call into one line with either HTTP client huggingface_hub
uses: requests (before 1.0, within the declared range) and httpx (1.0 on; test_push.py)."""
from __future__ import annotations

import pytest

from armdata.commands.push import hub_error
from tests.commands.test_push import closed_port

requests = pytest.importorskip(
    "requests", reason="the requests-based Hub client (huggingface_hub < 1.0) needs requests")


def test_unreachable_with_requests_is_one_line_without_retry_state() -> None:
    endpoint = f"http://127.0.0.1:{closed_port()}"
    with pytest.raises(requests.ConnectionError) as caught:
        requests.post(f"{endpoint}/api/repos/create", timeout=5)
    message = hub_error(caught.value, endpoint)
    assert message.startswith(f"cannot reach the Hub at {endpoint} (ConnectionRefusedError: ")
    assert "Retry" not in message and "\n" not in message


def test_status_with_requests_names_request_and_hint() -> None:
    response = requests.Response()
    response.status_code, response.reason = 404, "Not Found"
    response.request = requests.Request(
        "POST", "http://127.0.0.1:9/api/repos/create?token=secret").prepare()
    message = hub_error(requests.HTTPError(response=response), "http://127.0.0.1:9")
    assert message == ("the Hub at http://127.0.0.1:9 answered 404 to POST /api/repos/create: "
                       "Not Found; check --repo, --revision and HF_ENDPOINT")


def test_other_errors_are_not_called_network_errors() -> None:
    assert hub_error(FileNotFoundError("x.parquet"), "https://hf.co") == "push failed: x.parquet"
