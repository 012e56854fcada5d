"""The default authorize hook, the badge and the pure views."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from outbox.config import decide
from outbox.store import Discarded
from outbox.web import BADGE_TEXT, Links, badge_html, html_attributes, same_origin
from outbox.web.view import discarded_message, lock_message


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
        ("POST", {"Origin": "https://helios.example:8443"}, True),
        ("POST", {"Origin": "http://HELIOS.example:8443"}, True),  # TLS proxy: scheme ignored
        ("POST", {"Origin": "https://helios.example"}, False),  # another port
        ("POST", {"Origin": "https://helios.example:8443.evil.example"}, False),
        ("POST", {"Origin": "null"}, False),
        ("POST", {"Referer": "https://helios.example:8443/dashboard?x=1"}, True),
        ("POST", {"Referer": "https://evil.example/helios.example:8443"}, False),
        ("POST", {}, False),
        ("GET", {}, True),  # curl or a server-side script may read
    ],
)
def test_same_origin(method: str, headers: dict[str, str], allowed: bool) -> None:
    assert same_origin(request(method, {**HOST, **headers}), "ui_actions") is allowed


def test_same_origin_without_a_host_refuses_writes() -> None:
    assert not same_origin(request("POST", {"Origin": "https://helios.example"}), "admin")


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
