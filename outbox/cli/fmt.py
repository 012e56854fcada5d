"""Pure formatting for the command line: sizes, times, durations, 80-column tables.

No I/O and no clock here: callers pass ``now``.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from datetime import UTC, datetime

#: The terminal width tables are fitted into.
WIDTH = 80

ELLIPSIS = "..."

#: What each mode means, in the words every command uses.
MODES = {
    "on": "on: usage counts are collected and sent",
    "local": "local: usage counts are collected and kept here, never sent",
    "off": "off: nothing is collected or sent",
}

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"\s*(\d{1,9})\s*([smhdw])\s*", re.IGNORECASE)


def parse_duration(text: str) -> int:
    """``30d`` → seconds. Units: s, m, h, d, w.

    :raises ValueError: saying what is accepted.
    """
    match = _DURATION.fullmatch(text)
    if match is None:
        raise ValueError(
            f"{text!r} is not a duration; use a whole number and a unit: "
            "s, m, h, d or w (for example 30d, 12h, 2w)"
        )
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


def human_bytes(n: int) -> str:
    """``49152`` → ``48.0 KiB``."""
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            break
    return f"{value:.1f} {unit}"


def span(seconds: float) -> str:
    """A short duration: ``45s``, ``12m``, ``3h 5m``, ``2d 4h``."""
    s = int(abs(seconds))
    if s < 60:
        return f"{s}s"
    m = s // 60
    if m < 60:
        return f"{m}m"
    h, m = divmod(m, 60)
    if h < 24:
        return f"{h}h {m}m" if m else f"{h}h"
    d, h = divmod(h, 24)
    return f"{d}d {h}h" if h else f"{d}d"


def stamp(ts: float) -> str:
    """Unix seconds → ``2026-11-25 10:00 UTC``."""
    return datetime.fromtimestamp(int(ts), UTC).strftime("%Y-%m-%d %H:%M UTC")


def relative(ts: float, now: float) -> str:
    """``in 5m`` / ``3h ago`` / ``now``."""
    delta = int(ts) - int(now)
    if delta == 0:
        return "now"
    return f"in {span(delta)}" if delta > 0 else f"{span(delta)} ago"


def when(ts: float, now: float) -> str:
    """``2026-11-25 10:00 UTC (3h ago)``."""
    return f"{stamp(ts)} ({relative(ts, now)})"


def iso_to_short(iso: str) -> str:
    """``2026-11-25T10:00:00Z`` → ``2026-11-25 10:00``; anything else unchanged."""
    if len(iso) == 20 and iso[10] == "T" and iso.endswith("Z"):
        return f"{iso[:10]} {iso[11:16]}"
    return iso


def period(start: str, end: str) -> str:
    """A heartbeat's period, the end shortened when it shares the start's year or day."""
    a, b = iso_to_short(start), iso_to_short(end)
    if a[:10] == b[:10] and len(b) == 16:
        return f"{a} - {b[11:]}"
    if a[:4] == b[:4] and len(b) == 16:
        return f"{a} - {b[5:]}"
    return f"{a} - {b}"


def short_id(heartbeat_id: str) -> str:
    """The first 8 characters: unique in practice, and ``heartbeats --id`` takes it."""
    return heartbeat_id[:8]


def clip(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, ending in ``...`` when cut; one line."""
    one_line = " ".join(text.split())
    if len(one_line) <= width:
        return one_line
    if width <= len(ELLIPSIS):
        return one_line[:width]
    return one_line[: width - len(ELLIPSIS)] + ELLIPSIS


def plural(n: int, word: str, words: str | None = None) -> str:
    """``1 event``, ``2 events``."""
    return f"{n} {word if n == 1 else (words or word + 's')}"


def table(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    right: Collection[int] = (),
    flex: int | None = None,
    width: int = WIDTH,
) -> list[str]:
    """Aligned columns separated by two spaces, fitted into ``width``.

    When too wide, column ``flex`` is narrowed and its cells clipped with ``...``.
    """
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(header)]
    excess = sum(widths) + 2 * (len(widths) - 1) - width
    if flex is not None and excess > 0:
        widths[flex] = max(len(header[flex]), len(ELLIPSIS) + 1, widths[flex] - excess)

    def line(cells: Sequence[str]) -> str:
        out = []
        for i, cell in enumerate(cells):
            text = clip(cell, widths[i])
            out.append(text.rjust(widths[i]) if i in right else text.ljust(widths[i]))
        return "  ".join(out).rstrip()

    return [line(header), *(line(r) for r in rows)]


def wrap_value(label: str, value: str, *, label_width: int, width: int = WIDTH) -> list[str]:
    """``label   value``, the value wrapped at word boundaries under itself."""
    room = max(20, width - label_width)
    lines: list[str] = []
    current = ""
    for word in _words(value):
        if current and len(current) + 1 + len(word) > room:
            lines.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    lines.append(current)
    pad = " " * label_width
    return [f"{label.ljust(label_width)}{lines[0]}", *(pad + rest for rest in lines[1:])]


def _words(text: str) -> list[str]:
    """Split at spaces, keeping a short parenthesised group such as ``(in 5m)`` whole."""
    words: list[str] = []
    for word in text.split(" "):
        if words and words[-1].startswith("(") and ")" not in words[-1] and len(words[-1]) < 16:
            words[-1] += " " + word
        else:
            words.append(word)
    return words
