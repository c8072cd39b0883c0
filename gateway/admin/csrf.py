"""CSRF tokens for the admin console's forms: an HMAC of the login under a secret made
when the process starts. A token is good for one login until the process restarts; a
page opened before a restart must be reloaded (the POST answers 403 and changes nothing).
No state is kept per session, and a token taken from one admin's page is worth nothing
in another admin's request."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

#: The form field every POST of the console carries.
FIELD = "csrf"


class CsrfTokens:
    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret if secret is not None else secrets.token_bytes(32)

    def token(self, login: str) -> str:
        """The token `login`'s forms carry."""
        digest = hmac.new(self._secret, login.encode("utf-8"), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")

    def valid(self, login: str, token: str) -> bool:
        """Whether `token` is `login`'s (compared in constant time)."""
        return hmac.compare_digest(self.token(login).encode(), token.encode("utf-8"))
