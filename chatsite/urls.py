from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest, HttpResponseRedirect
from django.templatetags.static import static
from django.urls import include, path

from accounts import views as account_views
from moderation import overview


def favicon(request: HttpRequest) -> HttpResponseRedirect:
    """Pages that name no icon (admin's) make browsers ask for /favicon.ico: the site's."""
    return HttpResponseRedirect(static("chatsite/favicon.svg"))


urlpatterns = [
    path("favicon.ico", favicon),
    path("admin/overview/", overview.overview, name="admin_overview"),
    # Before the admin's own: with local sign-in off its password form is not offered.
    path("admin/login/", account_views.admin_signin),
    path("admin/", admin.site.urls),
    path("", include("accounts.urls")),
    path("", include("conversations.urls")),
]

if settings.CHATSITE_DEMO_MODE:
    # The built-in demo model exists only when it is the upstream.
    urlpatterns.insert(-1, path("demo/v1/", include("conversations.demo_urls")))
