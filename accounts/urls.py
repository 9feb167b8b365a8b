"""The account's addresses: signing in and out, signing up, the settings page and what it
holds. Mounted at the site's root (chatsite/urls.py)."""

from allauth.socialaccount.providers.openid_connect import views as openid_connect_views
from django.contrib.auth import views as auth_views
from django.urls import path

from . import sso, views

urlpatterns = [
    path("accounts/login/", views.signin, name="login"),
    # Django's LogoutView accepts POST only: a link or an image cannot log anyone out.
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/signup/", views.signup, name="signup"),
    # Single sign-on: django-allauth's OpenID Connect views only (accounts/oidc/<provider>/
    # login/ and login/callback/; a provider not configured is a 404) and the pages its flow
    # names, in the site's templates. None of allauth's local account views is mounted.
    path(
        "accounts/oidc/<str:provider_id>/login/",
        sso.provider_login,
        name="openid_connect_login",
    ),
    path(
        "accounts/oidc/<str:provider_id>/login/callback/",
        openid_connect_views.callback,
        name="openid_connect_callback",
    ),
    # GitHub (allauth's provider, plain OAuth 2): its two views, for GitHub configured only.
    path("accounts/github/login/", sso.github_login, name="github_login"),
    path("accounts/github/login/callback/", sso.github_callback, name="github_callback"),
    path("accounts/sso/cancelled/", sso.login_cancelled, name="socialaccount_login_cancelled"),
    path("accounts/sso/error/", sso.login_error, name="socialaccount_login_error"),
    path("accounts/sso/signup/", sso.signup_unreachable, name="socialaccount_signup"),
    path("settings/", views.user_settings, name="user_settings"),
    path("settings/export.zip", views.export_all, name="export_all"),
    path("settings/import/", views.conversation_import, name="conversation_import"),
    path(
        "settings/import/<uuid:public_id>/",
        views.conversation_import_status,
        name="conversation_import_status",
    ),
    path("settings/shares/<int:share_id>/revoke/", views.share_revoke, name="share_revoke"),
    path("settings/shares/revoke-all/", views.share_revoke_all, name="share_revoke_all"),
    path("settings/delete-account/", views.account_delete, name="account_delete"),
]
