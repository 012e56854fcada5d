"""The privacy settings page and the dashboard badge, as HTML: pure functions.

The page works as it is rendered (state, lists, links, lock reason); the small
``privacy.js`` only sends the toggle to ``PUT /api/settings/telemetry``. No
inline script or style, so the page runs under a strict Content-Security-Policy.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from html import escape
from typing import Final

from outbox import disclosure
from outbox.config import Decision
from outbox.web.view import BADGE_TEXT, TOGGLE_LABEL, Links, headline, lock_message

#: Sent with the privacy page: only this site's own scripts, styles and requests.
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'self'"
)


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
        """The same paths below a mount point (``root_path``)."""
        root = root.rstrip("/")
        if not root:
            return self
        return Paths(**{f.name: root + getattr(self, f.name) for f in fields(self)})


def html_attributes(decision: Decision, links: Links, paths: Paths | None = None) -> str:
    """Attributes for a host page's ``<html>`` tag that tell ``telemetry.js`` the state.

    With them the module knows at once whether to count anything, and never
    has to ask ``GET /api/settings/telemetry``::

        <html lang="en" {{ html_attributes(telemetry.decision(), links) }}>
    """
    paths = paths or Paths()
    values = {
        "data-helios-telemetry": decision.mode,
        "data-helios-telemetry-endpoint": paths.ui_actions,
        "data-helios-telemetry-settings": paths.settings,
        "data-helios-insights-url": links.insights_url,
    }
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


def privacy_page(decision: Decision, links: Links, paths: Paths | None = None) -> str:
    """The whole privacy settings page for the current state."""
    paths = paths or Paths()
    checked = " checked" if decision.collecting else ""
    disabled = " disabled" if decision.locked else ""
    lock = lock_message(decision)
    lock_html = (
        f'      <p id="helios-share-lock" class="helios-lock">{escape(lock)}</p>\n'
        if lock
        else '      <p id="helios-share-lock" class="helios-lock" hidden></p>\n'
    )
    described = "helios-share-status helios-share-lock" if lock else "helios-share-status"
    static = escape(paths.static)
    status = escape(headline(decision))
    return f"""<!doctype html>
<html lang="en" {html_attributes(decision, links, paths)}>
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
{lock_html}      <p id="helios-share-error" class="helios-error" role="alert" hidden></p>
    </section>
    <section aria-labelledby="helios-collected-heading">
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
