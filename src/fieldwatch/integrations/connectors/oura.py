"""Oura API v2: OAuth 2 (single-use refresh tokens), collections by date range with
``next_token`` pages."""

from __future__ import annotations

from typing import Any, ClassVar

import httpx

from fieldwatch.integrations.connectors.catalogue import CONNECTORS, ConnectorInfo


class OuraConnector:
    info: ClassVar[ConnectorInfo] = CONNECTORS["oura"]
    auth_base: ClassVar[str] = "https://cloud.ouraring.com"
    api_base: ClassVar[str] = "https://api.ouraring.com"
    authorize_path: ClassVar[str] = "/oauth/authorize"
    token_path: ClassVar[str] = "/oauth/token"
    revoke_path: ClassVar[str | None] = "/oauth/revoke"
    scopes: ClassVar[tuple[str, ...]] = ("personal", "daily", "heartrate", "session", "spo2")

    async def account_id(self, http: httpx.AsyncClient, token: dict[str, Any]) -> str:
        answer = await http.get(
            "/v2/usercollection/personal_info",
            headers={"Authorization": f"Bearer {token['access_token']}"},
        )
        answer.raise_for_status()
        return str(answer.json()["id"])
