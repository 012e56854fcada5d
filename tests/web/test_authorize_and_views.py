"""The origin check, the badge and the pure views."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from outbox.config import decide
from outbox.store import Discarded
from outbox.web import BADGE_TEXT, Links, badge_html, html_attributes, same_origin
from outbox.web.authorize import declared_hosts, is_loopback_host, origin_problem
from outbox.web.view import Viewer, change_note, discarded_message, lock_message, settings_view


def request(method: str, headers: dict[str, str]) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "method": method, "path": "/", "headers": raw})


HOST = {"Host": "helios.example:8443"}


@pytest.mark.parametrize(
    ("method", "headers", "allowed"),
    [
        ("POST", {"Sec-Fetch-Site": "same-origin"}, True),
        ("POST", {"Sec-Fetch-Site": "same-site"}, False),
        ("POST", {"Sec-Fetch-Site": "cross-site"}, False),
        ("POST", {"Sec-Fetch-Site": "none"}, False),
        ("GET", {"Sec-Fetch-Site": "none"}, True),  # typed into the address bar
        ("GET", {"Sec-Fetch-Site": "cross-site"}, False),
        # Sec-Fetch-Site wins over a matching Origin
        ("POST", {"Sec-Fetch-Site": "cross-site", "Origin": "https://helios.example:8443"}, False),
        ("POST", {"Sec-Fetch-Site": "same-origin", "Origin": "https://evil.example"}, False),
        ("POST", {"Origin": "https://helios.example:8443"}, True),
        ("POST", {"Origin": "http://HELIOS.example:8443"}, True),  # TLS proxy: scheme ignored
        ("POST", {"Origin": "https://helios.example"}, False),  # another port
        ("POST", {"Origin": "https://helios.example:8443.evil.example"}, False),
        ("POST", {"Origin": "https://user@helios.example:8443"}, False),
        ("POST", {"Origin": "null"}, False),
        # a Referer alone is not enough for a write (it can be forged by a page's own links)
        ("POST", {"Referer": "https://helios.example:8443/dashboard?x=1"}, False),
        ("POST", {"Referer": "https://evil.example/helios.example:8443"}, False),
        ("POST", {}, False),
        ("GET", {}, True),  # curl or a server-side script may read
        ("GET", {"Origin": "https://evil.example"}, False),
    ],
)
def test_same_origin(method: str, headers: dict[str, str], allowed: bool) -> None:
    assert same_origin(request(method, {**HOST, **headers}), "ui_actions") is allowed


def test_same_origin_without_a_host_refuses_everything() -> None:
    assert not same_origin(request("POST", {"Origin": "https://helios.example"}), "admin")
    assert not same_origin(request("GET", {}), "read_settings")


def lower(headers: dict[str, str]) -> dict[str, str]:
    """Header names as every framework looks them up (case-insensitively)."""
    return {k.lower(): v for k, v in headers.items()}


ORIGINS = declared_hosts(["https://helios.example", "http://127.0.0.1:8000"])


def test_declared_origins_become_host_values() -> None:
    assert ORIGINS == {"helios.example", "helios.example:443", "127.0.0.1:8000"}
    for bad in ["helios.example", "https://helios.example/app", "ftp://x", "https://"]:
        with pytest.raises(ValueError, match="write the scheme, host and port"):
            declared_hosts([bad])
    with pytest.raises(ValueError, match="takes a list"):
        declared_hosts("https://helios.example")


@pytest.mark.parametrize(
    ("headers", "problem"),
    [
        ({"Host": "helios.example", "Origin": "https://helios.example"}, None),
        ({"Host": "helios.example:443", "Origin": "https://helios.example:443"}, None),
        ({"Host": "127.0.0.1:8000", "Sec-Fetch-Site": "same-origin"}, None),
        # DNS rebinding: evil.example resolves to this server; the browser sends its own
        # name as Host and a matching Origin
        (
            {"Host": "evil.example", "Origin": "http://evil.example"},
            "cross-site request: the Host it was sent to is not one of the app's declared origins",
        ),
        (
            {"Host": "127.0.0.1:9999", "Origin": "http://127.0.0.1:9999"},
            "cross-site request: the Host it was sent to is not one of the app's declared origins",
        ),
        (
            {"Host": "helios.example", "Origin": "https://evil.example"},
            "cross-site request: its Origin is not the host it was sent to",
        ),
        (
            {"Host": "helios.example", "Referer": "https://helios.example/settings/privacy"},
            "cross-site request: a change needs the browser's Origin or Sec-Fetch-Site header "
            "(a Referer alone is not enough)",
        ),
        ({"Origin": "https://helios.example"}, "cross-site request: the request names no Host"),
    ],
)
def test_writes_against_declared_origins(headers: dict[str, str], problem: str | None) -> None:
    assert origin_problem("PUT", lower(headers), write=True, hosts=ORIGINS) == problem


def test_without_declared_origins_the_settings_write_is_loopback_only() -> None:
    evil = lower({"Host": "evil.example", "Origin": "http://evil.example"})
    problem = origin_problem("PUT", evil, write=True, loopback_only=True)
    assert problem is not None and problem.startswith("cross-site request: no origins are declared")
    assert "origins=[" in problem
    local = lower({"Host": "127.0.0.1:8000", "Origin": "http://127.0.0.1:8000"})
    assert origin_problem("PUT", local, write=True, loopback_only=True) is None
    # the same request to a route without the loopback rule (UI actions) passes
    assert origin_problem("POST", evil, write=True) is None


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("localhost:8000", True),
        ("app.localhost:80", True),
        ("127.0.0.1:1", True),
        ("127.8.9.10", True),
        ("[::1]:80", True),
        ("::1", True),
        ("evil.example", False),
        ("127.0.0.1.evil.example", False),
        ("localhost.evil.example", False),
        ("10.0.0.1", False),
        ("[::2]:80", False),
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


LINKS = Links()


def test_the_badge_only_while_sharing() -> None:
    on = decide("true", False, None)
    html = badge_html(on, LINKS)
    assert BADGE_TEXT in html and 'href="https://helios.gridworx.io/insights"' in html
    assert badge_html(decide("local", False, None), LINKS) == ""  # collected, never sent
    assert badge_html(decide(None, False, None), LINKS) == ""
    assert badge_html(decide("true", True, True), LINKS) == ""


def test_html_attributes_carry_the_mode() -> None:
    attrs = html_attributes(decide("local", False, None), LINKS)
    assert 'data-helios-telemetry="local"' in attrs
    assert 'data-helios-telemetry-endpoint="/api/telemetry/ui-actions"' in attrs


def test_lock_messages_name_the_variable_and_the_fix() -> None:
    assert lock_message(decide(None, False, True)) is None
    dnt = lock_message(decide(None, True, None))
    assert dnt is not None and "DO_NOT_TRACK" in dnt and "unset it" in dnt
    env = lock_message(decide("false", False, None))
    assert env is not None and "HELIOS_TELEMETRY_ENABLED" in env and "set it to true" in env


def test_who_may_change_the_setting() -> None:
    off, locked = decide(None, False, None), decide(None, True, None)
    admin, user, nobody = Viewer(True, True), Viewer(True, False), Viewer(False, False)
    assert settings_view(off, LINKS, viewer=admin)["may_change"] is True
    assert change_note(off, admin) is None
    assert settings_view(off, LINKS, viewer=user)["may_change"] is False
    assert change_note(off, user) == "Only an administrator can change this setting."
    note = change_note(off, nobody)
    assert note is not None and note.startswith("This setting is read-only here")
    assert "outbox enable" in note
    # locked: nobody may, and the lock message (not this note) says why
    assert settings_view(locked, LINKS, viewer=admin)["may_change"] is False
    assert change_note(locked, user) is None


@pytest.mark.parametrize(
    ("discarded", "text"),
    [
        (Discarded(0, 0), "Nothing unsent was waiting; nothing was deleted."),
        (Discarded(1, 0), "Deleted 1 unsent event: nothing collected before this is sent."),
        (
            Discarded(12, 1),
            "Deleted 12 unsent events and 1 unsent heartbeat: "
            "nothing collected before this is sent.",
        ),
    ],
)
def test_discarded_message(discarded: Discarded, text: str) -> None:
    assert discarded_message(discarded) == text
