from __future__ import annotations

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.urls import include, path, re_path
from django.views.decorators.csrf import csrf_exempt

from outbox.web import not_tracked, track_as
from tests.web.apps.common import USERS, relay_answer


@csrf_exempt
def users(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        return JsonResponse({"id": 1044}, status=201)
    return JsonResponse(sorted(USERS), safe=False)


@track_as("users.me.get")
def me(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"name": "Ada Lovelace"})


def user_by_name(request: HttpRequest, username: str) -> HttpResponse:
    return JsonResponse({"found": username in USERS.values()})


@csrf_exempt
def user(request: HttpRequest, user_id: int) -> HttpResponse:
    if request.method == "DELETE":
        return HttpResponse(status=204)
    if request.method == "PUT":
        return JsonResponse({"id": user_id})
    if user_id not in USERS:
        return JsonResponse({"detail": "Not Found"}, status=404)
    return JsonResponse({"name": USERS[user_id]})


def user_groups(request: HttpRequest, user_id: int) -> HttpResponse:
    return JsonResponse(["engineering"], safe=False)


@csrf_exempt
def deploy(request: HttpRequest, project: str) -> HttpResponse:
    return JsonResponse({"status": "queued"}, status=202)


def old_users(request: HttpRequest) -> HttpResponse:
    return HttpResponseRedirect("/api/users")


def broken(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("a bug in the app")


@not_tracked
def health(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"status": "ok"})


@csrf_exempt
@not_tracked
def relay(request: HttpRequest, path: str) -> HttpResponse:
    status, body = relay_answer(request.method or "GET", path)
    return HttpResponse(body, status=status, content_type="application/json")


urlpatterns = [
    path("api/users", users),
    path("api/users/me", me),
    path("api/users/by-name/<username>", user_by_name),
    path("api/users/<int:user_id>", user),
    re_path(r"^api/users/(?P<user_id>[0-9]+)/groups$", user_groups),  # re_path: same name
    path("api/v1/projects/<project>/deploy", deploy),
    path("api/old-users", old_users),
    path("api/broken", broken),
    path("healthz", health),
    path("api/relay/<path:path>", relay),
    path("", include("outbox.web.django.urls")),
]
