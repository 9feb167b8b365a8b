from django.contrib.auth import views as auth_views
from django.urls import path

from accounts.forms import LoginForm

from . import account_views

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(authentication_form=LoginForm), name="login"),
    # Django's LogoutView accepts POST only: a link or an image cannot log anyone out.
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("signup/", account_views.signup, name="signup"),
]
