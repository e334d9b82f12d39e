from __future__ import annotations

from fieldwatch.core.errors import Conflict, TooManyRequests, Unauthorized


class InvalidCredentials(Unauthorized):
    slug, title = "invalid-credentials", "Invalid credentials"


class RefreshTokenReused(Unauthorized):
    slug, title = "refresh-token-reused", "Refresh token reused"


class LastAdmin(Conflict):
    slug, title = "last-admin", "A workspace needs an admin"


class LoginThrottled(TooManyRequests):
    slug, title = "login-throttled", "Too many failed logins"
