"""The privacy settings page and the dashboard badge, as HTML: pure functions.

The page works as it is rendered (state, lists, links, lock reason); the small
``privacy.js`` only sends the toggle to ``PUT /api/settings/telemetry``. No
inline script or style, so the page runs under a strict Content-Security-Policy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from html import escape
from typing import Final

from outbox import disclosure
from outbox.config import Decision
from outbox.web.view import (
    BADGE_TEXT,
    TOGGLE_LABEL,
    Links,
    Viewer,
    change_note,
    headline,
    lock_message,
    may_change,
)

#: Sent with the privacy page: only this site's own scripts, styles and requests.
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'self'"
)

#: A path segment a link may carry: unreserved URL characters only (RFC 3986).
_PLAIN_SEGMENT = re.compile(r"[A-Za-z0-9._~-]+")


@dataclass(frozen=True)
class Paths:
    """Where the routes are mounted (as the browser must address them)."""

    ui_actions: str = "/api/telemetry/ui-actions"
    settings: str = "/api/settings/telemetry"
    static: str = "/telemetry/static"
    page: str = "/settings/privacy"
    help_json: str = "/api/telemetry/help"
    help_html: str = "/telemetry/help"

    def under(self, root: str) -> Paths:
        """The same paths below a mount point (``root_path``).

        A mount's path can hold what a client requested (``Mount("/{org}")``): a root
        with a segment that is not plain URL text (``/\\evil.example`` reads as
        ``//evil.example`` to a browser) is left out, so no link leaves the site.
        """
        root = root.rstrip("/")
        if not root or not all(_PLAIN_SEGMENT.fullmatch(s) for s in root.split("/")[1:]):
            return self
        return Paths(**{f.name: root + getattr(self, f.name) for f in fields(self)})


@dataclass(frozen=True)
class Csrf:
    """How the frontend proves that a write comes from this site, where the framework
    asks for a CSRF token (Django): ``telemetry.js`` and ``privacy.js`` then send the
    token in ``header`` with the UI-action POST and the settings PUT, and use
    ``fetch(..., {keepalive: true})`` instead of ``sendBeacon`` (which cannot send headers).

    :param header: the request header, e.g. ``X-CSRFToken``.
    :param token: the token as the page was rendered.
    :param cookie: a cookie holding the current token, read at send time (None when
        scripts cannot read it: HttpOnly, or kept in the session); it wins over ``token``.
    """

    header: str
    token: str = ""
    cookie: str | None = None


def html_attributes(
    decision: Decision, links: Links, paths: Paths | None = None, *, csrf: Csrf | None = None
) -> str:
    """Attributes for a host page's ``<html>`` tag that tell ``telemetry.js`` the state.

    With them the module knows at once whether to count anything, and never
    has to ask ``GET /api/settings/telemetry``::

        <html lang="en" {{ html_attributes(telemetry.decision(), links) }}>

    :param csrf: where a CSRF-checking framework wants its token (:class:`Csrf`).
    """
    paths = paths or Paths()
    values = {
        "data-helios-telemetry": decision.mode,
        "data-helios-telemetry-endpoint": paths.ui_actions,
        "data-helios-telemetry-settings": paths.settings,
        "data-helios-insights-url": links.insights_url,
    }
    if csrf is not None:
        values["data-helios-csrf-header"] = csrf.header
        values["data-helios-csrf-token"] = csrf.token
        if csrf.cookie:
            values["data-helios-csrf-cookie"] = csrf.cookie
    return " ".join(f'{k}="{escape(v)}"' for k, v in values.items())


def badge_html(decision: Decision, links: Links) -> str:
    """The "Contributing to Helios" badge: a link to the insights, or "" unless sharing is on."""
    if not decision.sending:
        return ""
    return (
        f'<a class="helios-telemetry-badge" href="{escape(links.insights_url)}" '
        'title="This Helios shares anonymous usage counts. See what everyone shares.">'
        f"{escape(BADGE_TEXT)}</a>"
    )


def _items(lines: tuple[str, ...]) -> str:
    return "\n".join(f"        <li>{escape(line)}</li>" for line in lines)


@dataclass(frozen=True)
class WhatIsSent:
    """What an administrator is shown before deciding: the next heartbeat exactly as
    ``outbox preview`` prints it, and the last one that was sent, with its date.

    :param next_heartbeat: the JSON text, or None when nothing was collected yet.
    :param last_sent: the JSON text of the last heartbeat delivered, or None.
    :param last_sent_at: when it was delivered (unix seconds).
    :param problem: why the outbox could not be read (the page says it instead).
    """

    next_heartbeat: str | None = None
    last_sent: str | None = None
    last_sent_at: int | None = None
    problem: str | None = None


def _paragraph(element_id: str, css: str, text: str | None, role: str = "") -> str:
    hidden = "" if text else " hidden"
    role_attr = f' role="{role}"' if role else ""
    return f'      <p id="{element_id}" class="{css}"{role_attr}{hidden}>{escape(text or "")}</p>\n'


def _what_is_sent(sent: WhatIsSent) -> str:
    if sent.problem is not None:
        body = f'    <p class="helios-error">{escape(sent.problem)}</p>\n'
    else:
        if sent.next_heartbeat is None:
            nxt = '    <p id="helios-next-heartbeat-none">Nothing has been collected yet.</p>\n'
        else:
            nxt = (
                "    <p>The next heartbeat, as it would be sent now "
                "(what <code>outbox preview</code> prints):</p>\n"
                f'    <pre id="helios-next-heartbeat" tabindex="0">'
                f"{escape(sent.next_heartbeat)}</pre>\n"
            )
        if sent.last_sent is None or sent.last_sent_at is None:
            last = '    <p id="helios-last-sent-date">No heartbeat has been sent yet.</p>\n'
        else:
            when = datetime.fromtimestamp(sent.last_sent_at, UTC).strftime("%Y-%m-%d %H:%M UTC")
            last = (
                f'    <p id="helios-last-sent-date">The last heartbeat sent, on {when}:</p>\n'
                f'    <pre id="helios-last-heartbeat" tabindex="0">'
                f"{escape(sent.last_sent)}</pre>\n"
            )
        body = nxt + last
    return (
        '    <section id="helios-what-is-sent" aria-labelledby="helios-sent-heading">\n'
        '      <h2 id="helios-sent-heading">Exactly what is sent</h2>\n'
        f"{body}"
        "    </section>\n"
    )


def privacy_page(
    decision: Decision,
    links: Links,
    paths: Paths | None = None,
    *,
    viewer: Viewer | None = None,
    worker_warning: str | None = None,
    sent: WhatIsSent | None = None,
    csrf: Csrf | None = None,
) -> str:
    """The whole privacy settings page for the current state and viewer.

    :param viewer: who is looking; only an administrator gets an enabled toggle.
    :param worker_warning: shown while sharing is on and no worker sends.
    :param sent: shown to administrators only (the caller passes it only for them).
    :param csrf: the token the toggle's PUT must carry (Django), see :class:`Csrf`.
    """
    paths = paths or Paths()
    viewer = viewer or Viewer()
    checked = " checked" if decision.collecting else ""
    disabled = "" if may_change(decision, viewer) else " disabled"
    lock = lock_message(decision)
    note = change_note(decision, viewer)
    lock_html = _paragraph("helios-share-lock", "helios-lock", lock)
    note_html = _paragraph("helios-share-note", "helios-lock", note)
    described = " ".join(
        ["helios-share-status", *(["helios-share-lock"] if lock else [])]
        + (["helios-share-note"] if note else [])
    )
    static = escape(paths.static)
    status = escape(headline(decision))
    worker_html = _paragraph("helios-worker", "helios-warning", worker_warning, "alert")
    sent_html = _what_is_sent(sent) if sent is not None and viewer.admin else ""
    can = "true" if may_change(decision, viewer) else "false"
    attributes = html_attributes(decision, links, paths, csrf=csrf)
    return f"""<!doctype html>
<html lang="en" {attributes} data-helios-may-change="{can}">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Privacy \u00b7 Helios</title>
  <link rel="stylesheet" href="{static}/telemetry.css">
  <script type="module" src="{static}/privacy.js"></script>
</head>
<body class="helios-privacy">
  <main>
    <h1>Privacy</h1>
    <section aria-labelledby="helios-usage-heading">
      <h2 id="helios-usage-heading">Usage data</h2>
      <div class="helios-toggle">
        <input type="checkbox" role="switch" id="helios-share" name="enabled"
               aria-describedby="{described}"{checked}{disabled}>
        <label for="helios-share">{escape(TOGGLE_LABEL)}</label>
      </div>
      <p id="helios-share-status" class="helios-status" role="status"
         aria-live="polite">{status}</p>
{lock_html}{note_html}      <p id="helios-share-error" class="helios-error" role="alert" hidden></p>
{worker_html}      <p id="helios-schedule">{escape(disclosure.SCHEDULE)}</p>
    </section>
{sent_html}    <section aria-labelledby="helios-collected-heading">
      <h2 id="helios-collected-heading">What is collected</h2>
      <ul id="helios-collected">
{_items(disclosure.COLLECTED)}
      </ul>
    </section>
    <section aria-labelledby="helios-not-collected-heading">
      <h2 id="helios-not-collected-heading">What is never collected</h2>
      <ul id="helios-not-collected">
{_items(disclosure.NOT_COLLECTED)}
      </ul>
    </section>
    <p class="helios-links">
      <a id="helios-privacy-policy" href="{escape(links.privacy_policy_url)}">Privacy policy</a>
      \u00b7
      <a id="helios-insights" href="{escape(links.insights_url)}">Public insights dashboard</a>
    </p>
  </main>
</body>
</html>
"""
