"""The site's URLs and one view that fails, for the 500 page's tests."""

from django.http import HttpRequest, HttpResponse
from django.urls import include, path


def fails(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("a view that fails (test)")


urlpatterns = [
    path("fails/", fails),
    path("", include("chatsite.urls")),
]
