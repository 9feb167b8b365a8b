from __future__ import annotations

from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError

from . import selectors


class LoginForm(AuthenticationForm):
    def confirm_login_allowed(self, user: User) -> None:
        super().confirm_login_allowed(user)
        suspension = selectors.suspension_current(user_id=user.pk)
        if suspension is not None:
            # Said only after the password was right: no one learns it from a guess.
            raise ValidationError(selectors.suspension_notice(suspension), code="suspended")
