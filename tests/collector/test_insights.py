"""``GET /api/insights``: exact numbers for a small fleet, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from tests.collector.payloads import body
from tests.support.clock import T0
from tests.support.collector import Collector

DAY_S = 86_400
A = "aaaaaaaa-0000-4000-8000-000000000001"
B = "bbbbbbbb-0000-4000-8000-000000000002"
C = "cccccccc-0000-4000-8000-000000000003"


def fleet(c: Collector) -> None:
    """C last heard 40 days ago, B 10 days ago, A today (the clock is the receipt time)."""
    c.clock.now = T0 - 40 * DAY_S
    c.post(
        body(
            {("api", "users.list", "2026-10-16"): 50},
            instance_id=C,
            version="1.3.0",
            period_end="2026-10-16T10:00:00Z",
        )
    )
    c.clock.now = T0 - 10 * DAY_S
    c.post(
        body(
            {
                ("api", "users.list", "2026-11-15"): 20,
                ("api", "groups.get", "2026-11-14"): 20,
                ("command", "deploy", "2026-11-15"): 2,
            },
            instance_id=B,
            edition="licensed",
            version="1.5.0",
            dropped={"over_capacity": 7},
            period_end="2026-11-15T10:00:00Z",
        )
    )
    c.clock.now = T0
    c.post(
        body(
            {
                ("api", "users.list", "2026-11-25"): 5,
                ("api", "users.create", "2026-11-24"): 5,
                ("command", "sync", "2026-11-25"): 3,
                ("ui", "bulk_edit", "2026-11-25"): 4,
                ("ui", "export_csv", "2026-11-23"): 6,
            },
            instance_id=A,
            version="1.5.0",
        )
    )


@pytest.fixture
def every_name(serve: Callable[..., Collector]) -> Collector:
    """A collector that publishes names reported by a single instance (K = 1): these
    tests check the arithmetic; test_k_anonymity.py checks what K hides."""
    return serve(min_instances=1)


def row(name: str, count: int, instances: int, share: float) -> dict[str, object]:
    return {"name": name, "count": count, "instances": instances, "share": share}


def test_thirty_day_window(every_name: Collector) -> None:
    collector = every_name
    fleet(collector)
    doc = collector.insights(days=30)
    assert doc["generated_at"] == "2026-11-25T10:00:00Z"
    assert (doc["days"], doc["from"], doc["to"]) == (30, "2026-10-27", "2026-11-25")
    assert doc["instances"] == {
        "active_7d": 1,
        "active_30d": 2,
        "in_window": 2,
        "by_edition": [
            {"edition": "community", "instances": 1},
            {"edition": "licensed", "instances": 1},
        ],
        "by_version": [{"version": "1.5.0", "instances": 2}],
    }
    assert doc["heartbeats"] == {"received": 2, "missing": 0}
    assert doc["totals"] == {"api": 50, "command": 5, "ui": 10}
    assert doc["min_instances"] == 1
    # Per name: the count, how many of the 2 instances active in the window used it, and
    # their share of them (C used users.list too, but 40 days ago).
    assert doc["top"] == {
        "api": [
            row("users.list", 25, 2, 1.0),
            row("groups.get", 20, 1, 0.5),
            row("users.create", 5, 1, 0.5),
        ],
        "command": [row("sync", 3, 1, 0.5), row("deploy", 2, 1, 0.5)],
        "ui": [row("export_csv", 6, 1, 0.5), row("bulk_edit", 4, 1, 0.5)],
    }
    assert doc["names"] == doc["top"]
    assert doc["other"] == {"api": 0, "command": 0, "ui": 0}
    assert doc["dropped"] == {"over_capacity": 7}
    # Every name, in the heartbeat's own shape, most used first.
    assert doc["api_usage"] == {"users.list": 25, "groups.get": 20, "users.create": 5}
    assert list(doc["api_usage"]) == ["users.list", "groups.get", "users.create"]
    assert doc["command_usage"] == {"sync": 3, "deploy": 2}
    assert doc["ui_actions"] == {"export_csv": 6, "bulk_edit": 4}
    daily = {d["day"]: (d["api"], d["command"], d["ui"]) for d in doc["daily"]}
    assert len(doc["daily"]) == 30
    assert list(daily) == sorted(daily)
    nonzero = {day: v for day, v in daily.items() if v != (0, 0, 0)}
    assert nonzero == {
        "2026-11-14": (20, 0, 0),
        "2026-11-15": (20, 2, 0),
        "2026-11-23": (0, 0, 6),
        "2026-11-24": (5, 0, 0),
        "2026-11-25": (5, 3, 4),
    }


def test_longer_window_includes_the_older_instance(every_name: Collector) -> None:
    collector = every_name
    fleet(collector)
    doc = collector.insights(days=90)
    assert doc["instances"]["in_window"] == 3
    assert doc["instances"]["by_edition"] == [
        {"edition": "community", "instances": 2},
        {"edition": "licensed", "instances": 1},
    ]
    assert doc["instances"]["by_version"] == [
        {"version": "1.5.0", "instances": 2},
        {"version": "1.3.0", "instances": 1},
    ]
    assert doc["totals"] == {"api": 100, "command": 5, "ui": 10}
    assert doc["top"]["api"][0] == row("users.list", 75, 3, 1.0)


def test_short_window_and_top_limit(every_name: Collector) -> None:
    collector = every_name
    fleet(collector)
    doc = collector.insights(days=2, top=1)
    assert (doc["from"], doc["to"]) == ("2026-11-24", "2026-11-25")
    assert doc["totals"] == {"api": 10, "command": 3, "ui": 4}
    assert doc["api_usage"] == {"users.create": 5, "users.list": 5}  # all names, not just top
    assert doc["top"] == {
        "api": [row("users.create", 5, 1, 1.0)],  # ties: by name
        "command": [row("sync", 3, 1, 1.0)],
        "ui": [row("bulk_edit", 4, 1, 1.0)],
    }
    assert [r["name"] for r in doc["names"]["api"]] == ["users.create", "users.list"]


def test_time_moves_instances_out_of_active(collector: Collector) -> None:
    fleet(collector)
    collector.clock.advance(8 * DAY_S)
    doc = collector.insights(days=30)
    assert (doc["instances"]["active_7d"], doc["instances"]["active_30d"]) == (0, 2)


def test_an_empty_collector_answers_zeros(collector: Collector) -> None:
    doc = collector.insights(days=7)
    assert doc["totals"] == {"api": 0, "command": 0, "ui": 0}
    assert doc["instances"]["active_30d"] == 0
    assert [d["api"] for d in doc["daily"]] == [0] * 7


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("days=0", "days"),
        ("days=367", "days"),
        ("days=abc", "days"),
        ("days=-1", "days"),
        ("days=%C2%B2", "days"),
        ("days=" + "9" * 5000, "days"),
        ("top=0", "top"),
        ("top=101", "top"),
    ],
)
def test_bad_parameters_are_422(refusing: Collector, query: str, field: str) -> None:
    for path in ("/api/insights", "/insights"):
        r = refusing.http.get(f"{path}?{query}")
        assert r.status_code == 422
        assert r.json()["field"] == field


def test_dashboard_shows_the_numbers_and_no_instance_id(every_name: Collector) -> None:
    collector = every_name
    fleet(collector)
    r = collector.http.get("/insights?days=30")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in r.headers["content-security-policy"]
    html = r.text
    for iid in (A, B, C):
        assert iid not in html
        assert iid[:8] not in html
    assert not re.search(r"<script|https?://(?!127\.0\.0\.1)", html)
    assert re.search(r'data-testid="total-api">50<', html)
    assert re.search(r'data-testid="active-30d">2<', html)
    assert re.search(r'data-testid="top-api-instances">2<', html)
    assert re.search(r'data-testid="top-api-share">100 %<', html)
    assert "<svg" in html


@pytest.mark.parametrize(
    "version", ['<b>1</b>&"x"', "db01.acme.internal", "1.4.2 (build 7)", "v1.4", "latest"]
)
def test_a_version_that_is_not_pep_440_or_semver_is_422(refusing: Collector, version: str) -> None:
    r = refusing.post(body(version=version))
    assert (r.status_code, r.json()["field"]) == (422, "app.version")
    assert "PEP 440 or semver" in r.json()["error"]


def test_thousands_are_separated_on_the_page(collector: Collector) -> None:
    collector.post(body({("api", "users.list", "2026-11-25"): 1234567}))
    html = collector.http.get("/insights?days=7").text
    assert 'data-testid="total-api">1,234,567<' in html
    assert collector.insights(days=7)["totals"]["api"] == 1234567


def test_root_redirects_to_the_dashboard(collector: Collector) -> None:
    r = collector.http.get("/", follow_redirects=False)
    assert (r.status_code, r.headers["location"]) == (307, "/insights")
