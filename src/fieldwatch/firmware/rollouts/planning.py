"""Which target devices a rollout updates, in which wave, and which it leaves out.

The one rule for the dry run and the start, so a rollout started from a dry run's body
updates the devices the dry run showed (as long as the fleet did not change between).

- Left out: what ``compat.refusal`` refuses (``require_deployed=True``), devices
  that have an update in progress (``open_update``), and, when the workspace requires
  signed firmware and the artifact has no signature, every other device (``unsigned``).
- Order: by SHA-256 of the artifact's id and the device's id: deterministic (the dry run
  and the start agree, a second dry run too), spread over the fleet, and another
  artifact picks other canaries. The first ``canary`` devices are wave 1.
- Waves: the canary, then one wave per cumulative percentage of the rest (rounded up);
  empty waves are dropped, the others are numbered from 1 on.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from fieldwatch.firmware.compat import UNSIGNED, ArtifactLike, Refusal, refusal

OPEN_UPDATE = "open_update"
NO_ELIGIBLE_DEVICE = "no_eligible_device"


@dataclass(frozen=True, slots=True)
class Candidate:
    """A target device, as far as planning needs it."""

    id: uuid.UUID
    name: str
    type: str
    hardware_version: str | None
    firmware_version: str | None
    status: str


@dataclass(slots=True)
class Plan:
    #: Devices per wave, wave 1 first.
    waves: list[list[Candidate]] = field(default_factory=list)
    excluded: list[tuple[Candidate, Refusal]] = field(default_factory=list)

    @property
    def included(self) -> int:
        return sum(len(w) for w in self.waves)

    @property
    def targets(self) -> int:
        return self.included + len(self.excluded)

    def why_none(self) -> str:
        """Why no device is included: ``unsigned`` when the artifact's missing signature
        left out a device that could have taken it, else ``no_eligible_device``."""
        if any(why.reason == UNSIGNED for _, why in self.excluded):
            return UNSIGNED
        return NO_ELIGIBLE_DEVICE

    def excluded_by_reason(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for _, why in self.excluded:
            counts[why.reason] = counts.get(why.reason, 0) + 1
        return counts


def wave_sizes(devices: int, canary: int, percentages: Sequence[int]) -> list[int]:
    """The sizes of the non-empty waves for ``devices`` eligible devices."""
    first = min(canary, devices)
    rest = devices - first
    sizes = [first]
    done = 0
    for pct in percentages:
        upto = min(rest, (rest * pct + 99) // 100)
        sizes.append(upto - done)
        done = upto
    return [s for s in sizes if s > 0]


def release_order(devices: Iterable[Candidate], salt: uuid.UUID) -> list[Candidate]:
    return sorted(devices, key=lambda d: hashlib.sha256(salt.bytes + d.id.bytes).digest())


def plan(
    devices: Iterable[Candidate],
    artifact: ArtifactLike,
    artifact_id: uuid.UUID,
    security_versions: Mapping[str, int],
    open_updates: Collection[uuid.UUID],
    *,
    canary: int,
    percentages: Sequence[int],
    unsigned_refused: bool = False,
) -> Plan:
    """``unsigned_refused``: the workspace requires signed firmware and ``artifact`` has
    no signature."""
    result = Plan()
    eligible: list[Candidate] = []
    for device in devices:
        why = refusal(device, artifact, security_versions, require_deployed=True)
        if why is None and device.id in open_updates:
            why = Refusal(OPEN_UPDATE, "the device has an update in progress")
        if why is None and unsigned_refused:
            why = Refusal(UNSIGNED, "the artifact is not signed and this workspace requires "
                          "signed firmware")  # fmt: skip
        if why is None:
            eligible.append(device)
        else:
            result.excluded.append((device, why))
    ordered = release_order(eligible, artifact_id)
    start = 0
    for size in wave_sizes(len(ordered), canary, percentages):
        result.waves.append(ordered[start : start + size])
        start += size
    result.excluded.sort(key=lambda e: (e[1].reason, e[0].name, e[0].id))
    return result
