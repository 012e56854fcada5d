"""The pure formatting helpers, with literals and no outbox."""

from __future__ import annotations

import pytest

from outbox.cli import fmt
from outbox.cli.forget import deletion_url
from tests.support.clock import T0


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30d", 2_592_000), ("12h", 43_200), ("90m", 5_400), ("45s", 45), ("2w", 1_209_600),
     ("2W", 1_209_600), (" 7 d ", 604_800), ("0d", 0)],
)  # fmt: skip
def test_parse_duration(text, seconds):
    assert fmt.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["30", "d", "1.5d", "-1d", "30y", "1d2h", "", "1e3s"])
def test_parse_duration_refuses_with_the_rule(text):
    with pytest.raises(ValueError, match=r"is not a duration; use a whole number and a unit"):
        fmt.parse_duration(text)


@pytest.mark.parametrize(
    ("n", "text"),
    [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (49_152, "48.0 KiB"),
     (5 * 1024**2 + 1, "5.0 MiB"), (3 * 1024**3, "3.0 GiB"), (2 * 1024**5, "2048.0 TiB")],
)  # fmt: skip
def test_human_bytes(n, text):
    assert fmt.human_bytes(n) == text


@pytest.mark.parametrize(
    ("delta", "text"),
    [(0, "now"), (45, "in 45s"), (-45, "45s ago"), (600, "in 10m"), (3600, "in 1h"),
     (-3900, "1h 5m ago"), (86400, "in 1d"), (-(86400 * 2 + 3600 * 4 + 59), "2d 4h ago")],
)  # fmt: skip
def test_relative(delta, text):
    assert fmt.relative(T0 + delta, T0) == text


def test_when_and_stamp():
    assert fmt.stamp(T0) == "2026-11-25 10:00 UTC"
    assert fmt.when(T0 + 300, T0) == "2026-11-25 10:05 UTC (in 5m)"


@pytest.mark.parametrize(
    ("start", "end", "text"),
    [
        ("2026-11-25T10:00:00Z", "2026-11-25T11:00:00Z", "2026-11-25 10:00 - 11:00"),
        ("2026-11-24T10:00:00Z", "2026-11-25T11:00:00Z", "2026-11-24 10:00 - 11-25 11:00"),
        ("2026-12-31T23:00:00Z", "2027-01-01T01:00:00Z", "2026-12-31 23:00 - 2027-01-01 01:00"),
    ],
)
def test_period(start, end, text):
    assert fmt.period(start, end) == text


def test_clip_and_short_id():
    assert fmt.clip("short", 10) == "short"
    assert fmt.clip("a line\nwith  breaks", 40) == "a line with breaks"
    assert fmt.clip("x" * 20, 10) == "xxxxxxx..."
    assert fmt.clip("x" * 20, 2) == "xx"
    assert fmt.short_id("0b4f6c1e-8c1d-4e4f-9a51-2d3c4b5a6f70") == "0b4f6c1e"


def test_table_fits_the_width_by_clipping_the_flexible_column():
    rows = [["api", "n" * 70, "12"], ["ui", "bulk_edit", "3"]]
    lines = fmt.table(["kind", "name", "count"], rows, right={2}, flex=1)
    assert lines == [
        "kind  name" + " " * 65 + "count",
        "api   " + "n" * 64 + "...     12",
        "ui    bulk_edit" + " " * 64 + "3",
    ]
    assert {len(line) for line in lines} == {80}
    assert fmt.table(["a", "b"], [["1", "2"]]) == ["a  b", "1  2"]


def test_wrap_value_keeps_short_parentheses_whole():
    lines = fmt.wrap_value(
        "worker",
        "running: pid 4242 holds the lease until 2026-11-25 11:16 UTC (in 5m)",
        label_width=15,
    )
    assert lines == [
        "worker         running: pid 4242 holds the lease until 2026-11-25 11:16 UTC",
        "               (in 5m)",
    ]
    assert fmt.wrap_value("x", "y", label_width=3) == ["x  y"]


@pytest.mark.parametrize(
    ("endpoint", "url"),
    [
        ("https://h.example/api/instances/heartbeat", "https://h.example/api/instances/ID"),
        ("https://h.example/api/instances/heartbeat/", "https://h.example/api/instances/ID"),
        ("http://127.0.0.1:8080/heartbeat?x=1", "http://127.0.0.1:8080/ID"),
    ],
)
def test_deletion_url(endpoint, url):
    assert deletion_url(endpoint, "ID") == url
