from __future__ import annotations

from django.urls import include, path

from examples.django_app import views

urlpatterns = [
    path("", views.dashboard),
    path("signin", views.signin),
    path("signout", views.signout),
    path("api/groups/<str:group>/members", views.group_members),
    path("api/commands/<str:name>", views.run_command),
    path("api/relay/<path:path>", views.relay_view),
    path("example-static/<path:path>", views.example_static),
    path("", include("outbox.web.django.urls")),
]
