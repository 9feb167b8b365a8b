from django.urls import include, path

from bench.writes import writes_view

urlpatterns = [
    path("bench/writes/", writes_view),
    path("", include("chatsite.urls")),
]
