"""Portal forms of the accounts app. They only shape input: the services decide (owner rules, scopes a
key may carry), exactly as for the API. The webhook forms are generation/portal/webhooks.py's."""
from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.utils.translation import gettext_lazy as _

from accounts.error_codes import AccountsErrors
from accounts.roles import SCOPES, Role
from accounts.services import LoginLocked, login_authenticate

ROLE_LABELS = {
    Role.OWNER: _("Owner"), Role.ADMIN: _("Admin"), Role.PRODUCER: _("Producer"),
    Role.REVIEWER: _("Reviewer"), Role.VIEWER: _("Viewer"),
}
ROLE_CHOICES = [(role, ROLE_LABELS[role]) for role in Role.values]


class LoginForm(forms.Form):
    email = forms.EmailField(label=_("Email"), max_length=254,
                             widget=forms.EmailInput(attrs={"autocomplete": "email", "autofocus": True}))
    password = forms.CharField(label=_("Password"), max_length=128,
                               widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}))


def login_locked_message(wait: int) -> str:
    return _("Too many failed attempts. Try again in %(minutes)d minute(s).") % {"minutes": max(1, wait // 60)}


class AdminLoginForm(AdminAuthenticationForm):
    """The operators' sign-in (Django admin) under the portal's failure count and lock: the same
    service decides, so a password guessed at /admin/ counts against /login/ and the other way round."""

    def clean(self):
        username, password = self.cleaned_data.get("username"), self.cleaned_data.get("password")
        if username is not None and password:
            try:
                self.user_cache = login_authenticate(request=self.request, email=username, password=password)
            except LoginLocked as exc:
                self.retry_after = exc.retry_after
                raise forms.ValidationError(login_locked_message(exc.retry_after), code=AccountsErrors.LOGIN_LOCKED)
            if self.user_cache is None:
                raise self.get_invalid_login_error()
            self.confirm_login_allowed(self.user_cache)  # staff only
        return self.cleaned_data


class InvitationAcceptForm(forms.Form):
    full_name = forms.CharField(max_length=150, required=False, label=_("Your name"),
                                widget=forms.TextInput(attrs={"autocomplete": "name"}))
    password = forms.CharField(
        label=_("Choose a password"), max_length=128, required=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text=_("At least 10 characters."),
    )


class InvitationForm(forms.Form):
    email = forms.EmailField(label=_("Email"), max_length=254,
                             widget=forms.EmailInput(attrs={"autocomplete": "off"}))
    role = forms.ChoiceField(label=_("Role"), choices=ROLE_CHOICES, initial=Role.VIEWER)


class MemberRoleForm(forms.Form):
    role = forms.ChoiceField(label=_("Role"), choices=ROLE_CHOICES)


class ApiKeyForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=100,
                           help_text=_("Say who or what uses it, e.g. “Render farm uploader”."))
    scopes = forms.MultipleChoiceField(
        label=_("Scopes"), widget=forms.CheckboxSelectMultiple,
        help_text=_("A key can only have scopes you hold yourself."),
    )

    def __init__(self, *args, held: frozenset[str], **kwargs):
        super().__init__(*args, **kwargs)
        # Offer what the creator holds; anything else is refused by api_key_create as well.
        self.fields["scopes"].choices = [(scope, scope) for scope in SCOPES if scope in held]


class AuditFilterForm(forms.Form):
    action = forms.CharField(label=_("Action"), max_length=64, required=False,
                             help_text=_("Exact, e.g. member.remove, or a prefix ending in a dot, e.g. apikey."))
    actor = forms.EmailField(label=_("Who (email)"), required=False)
