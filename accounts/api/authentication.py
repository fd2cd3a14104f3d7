"""`Authorization: Bearer <api key>` for partners."""
from __future__ import annotations

from django.contrib.auth.models import AnonymousUser
from rest_framework import authentication, exceptions

from accounts.audit import client_ip
from accounts.error_codes import AccountsErrors
from accounts.selectors import api_key_by_plaintext
from accounts.services import api_key_touch


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request)
        if not header:
            return None
        try:
            keyword, _, token = header.decode("ascii").partition(" ")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("The Authorization header is malformed.",
                                                  code=AccountsErrors.INVALID_API_KEY)
        if keyword != self.keyword:
            return None
        key = api_key_by_plaintext(token.strip())
        if key is None:
            raise exceptions.AuthenticationFailed("The API key is malformed or unknown.",
                                                  code=AccountsErrors.INVALID_API_KEY)
        if key.revoked_at is not None:
            raise exceptions.AuthenticationFailed("The API key was revoked.", code=AccountsErrors.API_KEY_REVOKED)
        api_key_touch(key=key, ip=client_ip(request))
        return AnonymousUser(), key

    def authenticate_header(self, request):
        return self.keyword
