"""Fuzzing the HTTP service from its OpenAPI document (schemathesis) against a real server: every
generated request, valid or not, gets a documented status, a body that fits the document, and
never a 5xx; path parameters that try to escape get a 4xx.

The server's queue holds one render and a long job fills it, so a fuzzed render that passes
validation is refused (429) at once instead of rendering.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from urllib.parse import quote, urlsplit

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import positive_data_acceptance
from server_helpers import running_server

FUZZ_EXAMPLES = 400  # generated requests, over all operations
TOKEN = "fuzz-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
FILLER = " ".join(f"Sentence {i} keeps the only queue slot taken while the fuzzer runs." for i in range(50))
PATH_TEMPLATES = [
    ("GET", "/v1/jobs/{}"),
    ("GET", "/v1/jobs/{}/events"),
    ("DELETE", "/v1/jobs/{}"),
    ("GET", "/v1/videos/{}"),
    ("HEAD", "/v1/videos/{}"),
    ("GET", "/v1/personas/{}"),
]
ESCAPES = [
    "../",
    "..%2f",
    "..%2F",
    "%2e%2e%2f",
    "%2e%2e/",
    "..%252f",
    "..\\",
    "%2fetc%2fpasswd",
    "/etc/passwd",
    "%00",
    "\\x00",
    "%c0%ae%c0%ae/",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[str]:
    env = {"ARA_SERVER_QUEUE_SIZE": "1", "ARA_SERVER_MAX_UPLOAD_MB": "1", "ARA_SERVER_JOB_TIMEOUT_S": "600"}
    with running_server(tmp_path_factory.mktemp("fuzz"), TOKEN, env) as base:
        filler = httpx.post(f"{base}/v1/jobs", json={"text": FILLER, "voice": False}, headers=AUTH)
        assert filler.status_code == 202, filler.text
        yield base
        httpx.delete(f"{base}/v1/jobs/{filler.json()['job_id']}", headers=AUTH)


NEGATIVE_DATA_STATUSES = [400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429]


def test_api_conforms_to_its_schema(server):
    """Valid and invalid requests to every operation; valid ones may still be refused (unknown
    persona or avatar: 422, the full queue: 429), so a 2xx is not required of them."""
    # 413 (a body over the size limit, e.g. text far beyond maxLength) rejects invalid data too.
    config = SchemathesisConfig.from_dict(
        {"checks": {"negative_data_rejection": {"expected-statuses": NEGATIVE_DATA_STATUSES}}}
    )
    schema = schemathesis.openapi.from_url(f"{server}/openapi.json", config=config)
    operations = [result.ok() for result in schema.get_all_operations()]
    cases = st.one_of([op.as_strategy(mode) for op in operations for mode in GenerationMode])

    @given(case=cases)
    @settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
    def check(case) -> None:
        response = case.call_and_validate(headers=AUTH, excluded_checks=[positive_data_acceptance])
        assert response.status_code < 500

    check()


def raw_request(base: str, method: str, path: str) -> tuple[int, bytes]:
    """Send `path` as it is (httpx would remove dot segments), following redirects (Starlette
    redirects `/v1/jobs/../` to `/v1/jobs/..`)."""
    for _ in range(3):
        conn = http.client.HTTPConnection(urlsplit(base).netloc, timeout=30)
        try:
            conn.request(method, path, headers=AUTH)
            response = conn.getresponse()
            status, body, location = response.status, response.read(), response.getheader("location")
        finally:
            conn.close()
        if status not in (307, 308):
            break
        path = urlsplit(location).path
    return status, body


@given(
    template=st.sampled_from(PATH_TEMPLATES),
    escape=st.sampled_from(ESCAPES),
    depth=st.integers(1, 8),
    target=st.sampled_from(["etc/passwd", "config/sidecar.yaml", "cache/index.sqlite3", "", "x.mp4"]),
    encode=st.booleans(),
)
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
def test_path_traversal_is_refused(server, template, escape, depth, target, encode):
    method, path = template
    value = escape * depth + target
    status, body = raw_request(server, method, path.format(quote(value, safe="") if encode else value))
    assert 400 <= status < 500, (status, body[:200])
    assert b"root:" not in body and b"server:" not in body and b"SQLite" not in body
    if body and method != "HEAD" and status != 400:  # uvicorn itself answers a bad request line
        assert json.loads(body)["error"]


@pytest.mark.parametrize(("method", "path"), PATH_TEMPLATES)
@pytest.mark.parametrize("value", ["a" * 4000, "%00" * 100, "\N{SNOWMAN}" * 100, "x/" * 50, "%2Fx" * 50])
def test_odd_ids_are_4xx(server, method, path, value):
    status, body = raw_request(server, method, path.format(quote(value, safe="%/")))
    assert 400 <= status < 500, (status, body[:200])
