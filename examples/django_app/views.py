"""Views of the Django example: sign-in, the dashboard, the relay, a routed API, commands."""

from __future__ import annotations

import hmac
from html import escape
from pathlib import Path

from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    HttpResponseRedirect,
    JsonResponse,
)
from django.middleware.csrf import get_token
from django.views.decorators.http import require_GET, require_POST
from django.views.static import serve

import outbox
from examples.helios_site import ACCOUNTS, USERS, Account, dashboard_html, make_commands, relay
from examples.helios_site import signin_html as _signin_html
from outbox.web import not_tracked
from outbox.web.django import html_attributes

STATIC = Path(__file__).resolve().parents[1] / "static"
COMMANDS = make_commands(outbox.telemetry)


def signed_in(request: HttpRequest) -> Account | None:
    return ACCOUNTS.get(request.session.get("account", ""))


def authorize(request: HttpRequest, action: str) -> bool:
    """Anyone may read and send UI-action counts; only a signed-in administrator gets
    ``admin`` (named in ``HELIOS_TELEMETRY["AUTHORIZE"]``)."""
    if action != "admin":
        return True
    account = signed_in(request)
    return account is not None and account.admin


def csrf_field(request: HttpRequest) -> str:
    """What ``{% csrf_token %}`` renders, for the sign-in and sign-out forms."""
    return f'<input type="hidden" name="csrfmiddlewaretoken" value="{escape(get_token(request))}">'


@not_tracked  # pages are not API calls
@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    page = dashboard_html(html_attributes(request), signed_in(request), csrf_field(request))
    return HttpResponse(page)


@require_GET
def group_members(request: HttpRequest, group: str) -> HttpResponse:  # groups.members.list
    return JsonResponse([u["name"] for u in USERS if u["group"] == group], safe=False)


@not_tracked  # the command counts itself
@require_POST
def run_command(request: HttpRequest, name: str) -> HttpResponse:
    command = COMMANDS.get(name)
    if command is None:
        return JsonResponse({"error": "no such command"}, status=404)
    return JsonResponse(command())


@not_tracked  # RelayTrackingMiddleware counts what it relays
def relay_view(request: HttpRequest, path: str) -> HttpResponse:
    status, doc = relay(path)
    return JsonResponse(doc, status=status)


@not_tracked
def signin(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return HttpResponse(_signin_html(hidden=csrf_field(request)))
    account = ACCOUNTS.get(request.POST.get("username", ""))
    password = request.POST.get("password", "")
    if account is None or not hmac.compare_digest(password, account.password):
        page = _signin_html("Unknown user name or wrong password.", csrf_field(request))
        return HttpResponse(page, status=401)
    request.session.cycle_key()
    request.session["account"] = account.name
    return HttpResponseRedirect("/", status=303)


@not_tracked
@require_POST
def signout(request: HttpRequest) -> HttpResponse:
    request.session.flush()
    return HttpResponseRedirect("/", status=303)


@not_tracked
def example_static(request: HttpRequest, path: str) -> HttpResponseBase:
    """The example's own script and style (a real site lets its web server serve them)."""
    return serve(request, path, document_root=str(STATIC))
