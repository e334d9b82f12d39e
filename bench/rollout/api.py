"""The operator's side of the rollout benchmark, through the HTTP API: upload the
artifact, create and start the rollout, read its figures."""

from __future__ import annotations

import hashlib
import os
import time
from typing import Any

import httpx

VERSION_FROM = "1.0.0"
VERSION_TO = "2.0.0"


class Operator:
    def __init__(self, base: str, token: str) -> None:
        self.http = httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60
        )
        self.unavailable = 0  # 503 answers to the driver's reads

    def _check(self, r: httpx.Response, expected: int) -> Any:
        if r.status_code != expected:
            raise SystemExit(f"{r.request.method} {r.request.url.path}: {r.status_code} {r.text}")
        return r.json()

    def upload(self, size: int) -> dict[str, Any]:
        """A random file of ``size`` bytes as version VERSION_TO for the fleet's type;
        the server's SHA-256 and size must be ours."""
        content = os.urandom(size)
        r = self.http.post(
            "/api/v1/firmware/artifacts",
            files={"file": ("bench-firmware.bin", content, "application/octet-stream")},
            data={"version": VERSION_TO, "device_types": "bench_sensor"},
        )
        artifact = self._check(r, 201)
        sha = hashlib.sha256(content).hexdigest()
        if artifact["sha256"] != sha or artifact["size"] != size:
            raise SystemExit(f"the server stored another file: {artifact}")
        return dict(artifact)

    def create(self, artifact_id: str, body: dict[str, Any]) -> dict[str, Any]:
        body = {
            "name": "rollout benchmark",
            "artifact_id": artifact_id,
            "target": {"filter": {"type": "bench_sensor"}},
            **body,
        }
        plan = self._check(self.http.post("/api/v1/firmware/rollouts/dry-run", json=body), 200)
        rollout = self._check(self.http.post("/api/v1/firmware/rollouts", json=body), 201)
        return {"plan": plan, "rollout": rollout}

    def start(self, rollout_id: str) -> dict[str, Any]:
        return dict(
            self._check(self.http.post(f"/api/v1/firmware/rollouts/{rollout_id}/start"), 200)
        )

    def read(self, rollout_id: str, tries: int = 30) -> dict[str, Any]:
        """The rollout; a 503 (the server's database pool is busy) is asked again after
        its Retry-After, and counted in ``unavailable``."""
        for _ in range(tries - 1):
            r = self.http.get(f"/api/v1/firmware/rollouts/{rollout_id}")
            if r.status_code != 503:
                break
            self.unavailable += 1
            time.sleep(float(r.headers.get("retry-after", "1")))
        return dict(self._check(r, 200))
