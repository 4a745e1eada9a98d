"""How API callers authenticate: a bearer token from `create_api_token`, or a logged-in browser session."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja.security import HttpBearer, SessionAuth

from labeling import services


class BearerAuth(HttpBearer):
    """Accept `Authorization: Bearer <token>` for a token made by `create_api_token`."""

    def authenticate(self, request: HttpRequest, token: str) -> Any:
        user = services.api_token_authenticate(raw=token.strip())
        if user is not None:
            request.user = user
        return user


class BrowserSessionAuth(SessionAuth):
    """Accept a logged-in browser session; check CSRF only when there is a session user to act as.

    Checking CSRF for anonymous requests would answer a missing or bad token with 403 instead of 401.
    """

    def __call__(self, request: HttpRequest) -> Any:
        if not request.user.is_authenticated:
            return None
        return super().__call__(request)


def api_auth() -> list[Any]:
    """Return the authentication classes every API operation accepts, tried in order."""
    return [BearerAuth(), BrowserSessionAuth()]
