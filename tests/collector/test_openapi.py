"""``GET /openapi.json`` describes the ingest endpoint as it behaves; schemathesis agrees."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs  # comes with schemathesis
import pytest

from collector import Storage, create_app
from collector.openapi import document
from collector.server import serve_in_thread
from collector.validate import Limits
from tests.collector.payloads import DAY, IID, auth, body, payload
from tests.support.clock import FakeClock
from tests.support.collector import Collector


def heartbeat_validator(spec: dict[str, Any]) -> Any:
    schema = {"$ref": "#/components/schemas/Heartbeat", "components": spec["components"]}
    return jsonschema_rs.Draft202012Validator(schema, validate_formats=True)


def test_served_document_is_the_one_for_the_limits(serve: Callable[..., Collector]) -> None:
    c = serve(limits=Limits(max_body=4096))
    spec = c.http.get("/openapi.json").json()
    assert spec == json.loads(json.dumps(document(Limits(max_body=4096))))
    assert spec["openapi"] == "3.1.0"
    post = spec["paths"]["/api/instances/heartbeat"]["post"]
    assert set(post["responses"]) == {"200", "400", "401", "409", "413", "415", "422", "503"}
    assert "4096 bytes" in post["responses"]["413"]["description"]


def test_payloads_the_outbox_builds_match_the_schema() -> None:
    validator = heartbeat_validator(document())
    for doc in (
        payload(),
        payload({}, dropped={"unknown_name": 2}),
        payload(edition="licensed", version="2.0.0-rc.1"),
    ):
        assert validator.is_valid(doc), list(validator.iter_errors(doc))


@pytest.mark.parametrize(
    "path_value",
    [
        ("sequence", 0),
        ("sequence", True),
        ("heartbeat_id", "not-a-uuid"),
        ("period_end", "2026-11-25T10:00:00+02:00"),
        ("app", {"version": "1", "edition": "enterprise"}),
        ("api_usage", {"Users.List": 1}),
        ("api_usage", {"users.list": 0}),
        ("dropped", {"invalid_name": 0}),
        ("client_ip", "10.0.0.1"),
        ("days", {"2026-02-30": {"api_usage": {}, "command_usage": {}, "ui_actions": {}}}),
    ],
)
def test_what_the_schema_refuses_the_collector_refuses(
    refusing: Collector, path_value: tuple[str, Any]
) -> None:
    key, value = path_value
    doc = copy.deepcopy(payload())
    doc[key] = value
    assert not heartbeat_validator(document()).is_valid(doc)
    assert refusing.post(json.dumps(doc).encode()).status_code in (400, 422)


def test_a_sums_mismatch_is_the_one_rule_the_schema_cannot_say(collector: Collector) -> None:
    doc = payload()
    doc["days"][DAY]["api_usage"]["users.list"] += 1
    assert heartbeat_validator(document()).is_valid(doc)
    r = collector.post(json.dumps(doc).encode())
    assert (r.status_code, r.json()["field"]) == (422, "api_usage.users.list")
    assert "sums of" in document()["paths"]["/api/instances/heartbeat"]["post"]["description"]


@pytest.mark.slow
def test_schemathesis_finds_nothing(tmp_path: Path) -> None:
    """Every check but "schema-valid data is accepted", which the sums rule defeats."""
    storage = Storage(tmp_path / "collector.db")
    with serve_in_thread(create_app(storage, clock=FakeClock())) as running:
        result = subprocess.run(
            [
                str(Path(sys.executable).parent / "st"),
                "run",
                f"{running.url}/openapi.json",
                "--checks",
                "all",
                "--exclude-checks",
                "positive_data_acceptance",
                # An export file's hash must match its base64 payload: random files never do.
                "--exclude-path",
                "/api/instances/import",
                "--max-examples",
                "40",
                "--seed",
                "7",
                # One secret for every instance it makes up (each binds it on first use).
                "--header",
                f"Authorization: {auth(IID)['Authorization']}",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=tmp_path,  # its .schemathesis/ cache goes there
        )
        # The real heartbeat still goes through afterwards.
        ok = httpx.post(
            f"{running.url}/api/instances/heartbeat",
            content=body(),
            headers={"Content-Type": "application/json", **auth(IID)},
        )
    storage.close()
    assert result.returncode == 0, result.stdout[-4000:]
    assert "No issues found" in result.stdout
    assert ok.json()["status"] == "accepted"
