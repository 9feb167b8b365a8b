"""The account's addresses: signing in and out, signing up, the settings page and what it
holds. Mounted at the site's root (chatsite/urls.py)."""

from django.contrib.auth import views as auth_views
from django.urls import path

from . import views
from .forms import LoginForm

urlpatterns = [
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(authentication_form=LoginForm),
        name="login",
    ),
    # Django's LogoutView accepts POST only: a link or an image cannot log anyone out.
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/signup/", views.signup, name="signup"),
    path("settings/", views.user_settings, name="user_settings"),
    path("settings/export.zip", views.export_all, name="export_all"),
    path("settings/import/", views.conversation_import, name="conversation_import"),
    path(
        "settings/import/<uuid:public_id>/",
        views.conversation_import_status,
        name="conversation_import_status",
    ),
    path("settings/shares/<int:share_id>/revoke/", views.share_revoke, name="share_revoke"),
    path("settings/delete-account/", views.account_delete, name="account_delete"),
]
