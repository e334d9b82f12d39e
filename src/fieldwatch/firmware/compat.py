"""Whether an artifact may go to a device, and why not: the one rule for a single
update, a rollout's dry run and its release.

Versions compare piece by piece: runs of digits as numbers, other runs as text
(``1.10.0`` > ``1.9.3``; ``2.0.0-rc1`` < ``2.0.0-rc2``). A version with fewer pieces
is lower when the shared pieces are equal (``1.2`` < ``1.2.1``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

_PIECE = re.compile(r"\d+|[A-Za-z]+")

INCOMPATIBLE_TYPE = "incompatible_type"
INCOMPATIBLE_HARDWARE = "incompatible_hardware"
BELOW_MIN_FROM_VERSION = "below_min_from_version"
ALREADY_ON_VERSION = "already_on_version"
ANTI_ROLLBACK = "anti_rollback"
RETIRED = "retired"
NOT_DEPLOYED = "not_deployed"
#: Not a property of the device: the workspace requires signed firmware and the
#: artifact has no signature (``UpdateService._check``, ``planning.plan``).
UNSIGNED = "unsigned"

REASONS = (
    INCOMPATIBLE_TYPE, INCOMPATIBLE_HARDWARE, BELOW_MIN_FROM_VERSION, ALREADY_ON_VERSION,
    ANTI_ROLLBACK, RETIRED, NOT_DEPLOYED, UNSIGNED,
)  # fmt: skip


def version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """A sort key: numbers before words at the same place, numbers by value."""
    return tuple((0, int(p)) if p.isdigit() else (1, p.lower()) for p in _PIECE.findall(version))


class DeviceLike(Protocol):
    @property
    def type(self) -> str: ...
    @property
    def hardware_version(self) -> str | None: ...
    @property
    def firmware_version(self) -> str | None: ...
    @property
    def status(self) -> str: ...


class ArtifactLike(Protocol):
    @property
    def version(self) -> str: ...
    @property
    def device_types(self) -> list[str]: ...
    @property
    def hardware_versions(self) -> list[str]: ...
    @property
    def min_from_version(self) -> str | None: ...
    @property
    def security_version(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Refusal:
    reason: str
    detail: str


def refusal(
    device: DeviceLike,
    artifact: ArtifactLike,
    security_versions: Mapping[str, int],
    *,
    require_deployed: bool,
) -> Refusal | None:
    """Why ``artifact`` must not go to ``device``; None when it may.
    ``security_versions`` maps the workspace's artifact versions to their security
    version: a device running one of them must not go below it (anti-rollback)."""
    if device.status == "retired":
        return Refusal(RETIRED, "the device is retired")
    if require_deployed and device.status != "deployed":
        return Refusal(NOT_DEPLOYED, f"the device is {device.status.replace('_', ' ')}")
    if device.type not in artifact.device_types:
        return Refusal(
            INCOMPATIBLE_TYPE,
            f"built for {', '.join(artifact.device_types)}; the device is a {device.type}",
        )
    if artifact.hardware_versions and device.hardware_version not in artifact.hardware_versions:
        return Refusal(
            INCOMPATIBLE_HARDWARE,
            f"runs on hardware {', '.join(artifact.hardware_versions)}; the device has "
            f"{device.hardware_version or 'no hardware version on record'}",
        )
    running = device.firmware_version
    if running is not None and running == artifact.version:
        return Refusal(ALREADY_ON_VERSION, f"the device already runs {running}")
    if artifact.min_from_version is not None and (
        running is None or version_key(running) < version_key(artifact.min_from_version)
    ):
        return Refusal(
            BELOW_MIN_FROM_VERSION,
            f"needs {artifact.min_from_version} or later to update from; the device runs "
            f"{running or 'an unknown version'}",
        )
    current = security_versions.get(running) if running is not None else None
    if current is not None and artifact.security_version < current:
        return Refusal(
            ANTI_ROLLBACK,
            f"security version {artifact.security_version} is below the "
            f"{current} of {running}, which the device runs",
        )
    return None
