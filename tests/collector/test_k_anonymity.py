"""k-anonymous publishing (issue 14, finding 3): a name or version reported by fewer than
K distinct instances never reaches the public page or JSON; the totals still add up.
On SQLite and PostgreSQL, through a real server."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import pytest

from tests.collector.payloads import DAY, body
from tests.support.clock import T0
from tests.support.collector import Collector

IDS = [f"5d0c0000-0000-4000-8000-00000000000{i}" for i in range(1, 6)]
SECRET_NAME = "acme_payroll.export"  # what one site's own code might call a command
COMMON = ("api", "users.list", DAY)


def public_text(c: Collector, days: int = 7) -> str:
    """Everything the public can read: the JSON and the page."""
    return c.http.get(f"/api/insights?days={days}").text + c.http.get(f"/insights?days={days}").text


def test_a_name_from_k_minus_1_instances_is_never_public_but_counted(
    collector: Collector,
) -> None:
    c = collector  # K = 3, the default
    for n, iid in enumerate(IDS[:3]):
        counts = {COMMON: 10}
        if n < 2:  # two instances: K - 1
            counts[("command", SECRET_NAME, DAY)] = 7
        c.post(body(counts, instance_id=iid))
    doc = c.insights(days=7)
    assert doc["min_instances"] == 3
    assert SECRET_NAME not in public_text(c)
    assert doc["command_usage"] == {}
    assert doc["names"]["command"] == []
    assert doc["other"] == {"api": 0, "command": 14, "ui": 0}
    assert doc["totals"] == {"api": 30, "command": 14, "ui": 0}
    assert doc["names"]["api"] == [
        {"name": "users.list", "count": 30, "instances": 3, "share": 1.0}
    ]
    for kind in ("api", "command", "ui"):  # listed + other == totals, exactly
        assert (
            sum(r["count"] for r in doc["names"][kind]) + doc["other"][kind]
            == (doc["totals"][kind])
        )
    page = c.http.get("/insights?days=7").text
    assert re.search(r'data-testid="other-command-count">14<', page)
    assert 'data-testid="top-command-row"' not in page
    # A third instance reports it: now it is public, with its instance count and share.
    c.post(body({("command", SECRET_NAME, DAY): 1}, instance_id=IDS[3]))
    doc = c.insights(days=7)
    assert doc["command_usage"] == {SECRET_NAME: 15}
    assert doc["names"]["command"] == [
        {"name": SECRET_NAME, "count": 15, "instances": 3, "share": 0.75}
    ]
    assert doc["other"]["command"] == 0
    assert re.search(r'data-testid="top-command-share">75 %<', c.http.get("/insights").text)


def test_one_instance_resending_a_name_does_not_make_it_public(collector: Collector) -> None:
    for seq in range(1, 6):
        collector.post(body({("ui", "hostname_like", DAY): 1}, sequence=seq))
    assert "hostname_like" not in public_text(collector)
    assert collector.insights(days=7)["other"]["ui"] == 5


def test_instances_count_only_within_the_window(collector: Collector) -> None:
    c = collector
    c.clock.now = T0 - 40 * 86_400
    for iid in IDS[:2]:
        c.post(body({("api", "audit.list", "2026-10-16"): 1}, instance_id=iid))
    c.clock.now = T0
    c.post(body({("api", "audit.list", DAY): 1}, instance_id=IDS[2]))
    assert "audit.list" not in public_text(c, days=30)  # one instance in these 30 days
    assert c.insights(days=90)["api_usage"] == {"audit.list": 3}


def test_versions_of_fewer_than_k_instances_are_other(collector: Collector) -> None:
    versions = ["1.5.0", "1.5.0", "1.5.0", "2.0.0-rc.1+acme.7", "1.4.2"]
    for iid, version in zip(IDS, versions, strict=True):
        collector.post(body(instance_id=iid, version=version))
    inst = collector.insights(days=7)["instances"]
    assert inst["by_version"] == [
        {"version": "1.5.0", "instances": 3},
        {"version": "other", "instances": 2},
    ]
    assert "acme" not in public_text(collector)
    assert "1.4.2" not in collector.http.get("/insights").text


def test_only_the_contract_drop_reasons_are_named(collector: Collector) -> None:
    collector.post(body(dropped={"invalid_name": 2, "db01_acme_corp": 5, "unknown_name": 1}))
    doc = collector.insights(days=7)
    assert doc["dropped"] == {"invalid_name": 2, "unknown_name": 1, "other": 5}
    assert "db01_acme_corp" not in public_text(collector)


@pytest.mark.parametrize("k", [1, 2, 5])
def test_k_is_an_option(serve: Callable[..., Collector], k: int) -> None:
    c = serve(min_instances=k)
    for iid in IDS[:2]:
        c.post(body({COMMON: 1}, instance_id=iid))
    doc = c.insights(days=7)
    assert doc["min_instances"] == k
    assert doc["api_usage"] == ({"users.list": 2} if k <= 2 else {})
    assert f"at least\n{k} instances" in c.http.get("/insights").text


def test_per_instance_data_is_not_in_the_public_documents(collector: Collector) -> None:
    for iid in IDS[:3]:
        collector.post(body({COMMON: 1}, instance_id=iid))
    text = public_text(collector)
    for iid in IDS:
        assert iid not in text and iid[:8] not in text
    assert "first_day" not in json.loads(collector.http.get("/api/insights").text)
    # Not at any depth either: no public row carries an instance's first or last day.
    for key in ("first_day", "last_day"):
        assert key not in text
