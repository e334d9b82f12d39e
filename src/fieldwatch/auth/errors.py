from __future__ import annotations

from fieldwatch.core.errors import Conflict, Forbidden, TooManyRequests, Unauthorized


class InvalidCredentials(Unauthorized):
    slug, title = "invalid-credentials", "Invalid credentials"


class RefreshTokenReused(Unauthorized):
    slug, title = "refresh-token-reused", "Refresh token reused"


class LastAdmin(Conflict):
    slug, title = "last-admin", "A workspace needs an admin"


class LoginThrottled(TooManyRequests):
    slug, title = "login-throttled", "Too many failed logins"


class NoWorkspace(Forbidden):
    """A signed-in user who belongs to no workspace (e.g. removed from the last one):
    they may see who they are, change their password, sign out and create a workspace;
    every workspace route answers this."""

    slug, title = "no-workspace", "Not a member of any workspace"
