"""``outbox forget`` against a real HTTP server on 127.0.0.1 that records the DELETE."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from outbox.config import package_version
from tests.cli import scenes
from tests.cli.conftest import INSTANCE
from tests.support.env import free_port
from tests.support.receiver import Receiver, Scripted

DELETED = Scripted(
    200, {"Content-Type": "application/json"}, b'{"status": "deleted", "heartbeats": 3}'
)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A real HTTP server that answers the next request as the service does after a
    deletion (tests script other answers) and records every request."""
    with Receiver() as r:
        r.script.append(DELETED)
        yield r


def answer(receiver: Receiver, status: int, body: bytes, content_type: str) -> None:
    """Answer the next request with this instead."""
    receiver.script.clear()
    receiver.script.append(Scripted(status, {"Content-Type": content_type}, body))


@pytest.fixture
def known(outbox):
    """An outbox whose instance id exists (made the way the app makes it)."""
    outbox.track("command", "sync")
    assert outbox.instance() == INSTANCE
    return outbox


def test_deletes_with_a_real_request(run, known, receiver):
    url = f"http://127.0.0.1:{receiver.port}/api/instances/{INSTANCE}"
    r = run("forget", "--yes", env={"HELIOS_TELEMETRY_ENDPOINT": receiver.url})
    assert r.exit_code == 0, r.output
    assert r.output.splitlines() == [
        f"the service deleted the data of instance {INSTANCE} (HTTP 200)",
        'its answer: {"status": "deleted", "heartbeats": 3}',
    ]
    assert [(q.method, q.path) for q in receiver.requests] == [
        ("DELETE", f"/api/instances/{INSTANCE}")
    ]
    headers = receiver.requests[0].headers
    assert headers["user-agent"] == f"helios-telemetry/{package_version()}"
    assert headers["host"] == url.split("/")[2]


def test_asks_first_and_sends_nothing_when_declined(run, known, receiver, db_path):
    env = {"HELIOS_TELEMETRY_ENDPOINT": receiver.url}
    r = run("forget", env=env, input="n\n")
    assert r.exit_code == 1
    assert r.stdout == (
        f"Ask 127.0.0.1:{receiver.port} to delete all data of instance {INSTANCE}? [y/N]: n\n"
    )
    assert r.stderr == "aborted: nothing was asked\n"
    assert receiver.requests == []
    assert run("forget", env=env, input="").exit_code == 1  # no answer is a no
    assert receiver.requests == []
    r = run("forget", env=env, input="y\n")
    assert r.exit_code == 0
    assert len(receiver.requests) == 1


def test_endpoint_option_wins_over_the_variable(run, known, receiver):
    r = run(
        "forget",
        "--yes",
        "--endpoint",
        receiver.url + "/",
        env={"HELIOS_TELEMETRY_ENDPOINT": "https://unused.example/api/instances/heartbeat"},
    )
    assert r.exit_code == 0
    assert receiver.requests[0].path == f"/api/instances/{INSTANCE}"


def test_404_means_no_data_there(run, known, receiver):
    answer(receiver, 404, b'{"detail": "unknown instance"}', "application/json")
    r = run("forget", "--yes", "--endpoint", receiver.url)
    assert (r.exit_code, r.output) == (
        0,
        "the service has no data for this instance (HTTP 404 from "
        f"http://127.0.0.1:{receiver.port}/api/instances/{INSTANCE})\n",
    )


def test_other_answers_fail(run, known, receiver):
    answer(receiver, 503, b"maintenance", "text/plain")
    r = run("forget", "--yes", "--endpoint", receiver.url)
    assert r.exit_code == 1
    assert r.stderr == (
        "Error: the service did not delete anything: HTTP 503 from "
        f"http://127.0.0.1:{receiver.port}/api/instances/{INSTANCE}: maintenance\n"
    )


def test_network_error_is_one_clear_line(run, known):
    port = free_port()  # nobody listens on it
    r = run("forget", "--yes", "--endpoint", f"http://127.0.0.1:{port}/api/instances/heartbeat")
    assert r.exit_code == 1
    assert r.stderr.startswith(
        f"Error: could not reach http://127.0.0.1:{port}/api/instances/{INSTANCE} ("
    )
    assert r.stderr.endswith(
        "); check the network and the endpoint (--endpoint or HELIOS_TELEMETRY_ENDPOINT), "
        "then try again\n"
    )
    assert len(r.stderr.splitlines()) == 1


def test_still_on_is_pointed_out(run, known, receiver):
    r = run("forget", "--yes", "--endpoint", receiver.url, env=scenes.ON)
    assert r.output.splitlines()[-1] == (
        "telemetry is still on: the next heartbeat sends new counts under the same instance "
        "id; `outbox disable` stops it"
    )


@pytest.mark.parametrize(
    ("endpoint", "message"),
    [
        (
            "http://collector.example/api/instances/heartbeat",
            "Error: --endpoint http://collector.example/api/instances/heartbeat is "
            "plain http; only https:// is accepted",
        ),
        ("heartbeat", "is not an http(s) URL"),
        (
            "https://collector.example/api/ingest",
            "cannot tell where to send the deletion from the endpoint "
            "'https://collector.example/api/ingest': it does not end in /heartbeat",
        ),
    ],
)
def test_unusable_endpoints_are_configuration_errors(run, known, endpoint, message):
    r = run("forget", "--yes", "--endpoint", endpoint)
    assert r.exit_code == 2
    assert message in r.stderr


def test_unusable_endpoint_variable_is_named(run, known):
    r = run("forget", "--yes", env={"HELIOS_TELEMETRY_ENDPOINT": "ftp://x/heartbeat"})
    assert r.exit_code == 2
    assert r.stderr.startswith("Error: HELIOS_TELEMETRY_ENDPOINT='ftp://x/heartbeat' is not")


def test_nothing_to_forget_without_an_instance_id(run, receiver, db_path):
    r = run("forget", "--yes", "--endpoint", receiver.url)
    assert (r.exit_code, r.output) == (
        0,
        "this outbox has no instance id: no heartbeat was ever made from it, so the service "
        "holds nothing to forget\n",
    )
    assert receiver.requests == []
    assert not db_path.exists()


def test_json_answer_is_printed_compactly(run, known, receiver):
    answer(
        receiver,
        200,
        json.dumps({"deleted": {"heartbeats": 2, "gaps": 0}}).encode(),
        "application/json",
    )
    r = run("forget", "--yes", "--endpoint", receiver.url)
    assert r.output.splitlines()[1] == 'its answer: {"deleted": {"heartbeats": 2, "gaps": 0}}'
