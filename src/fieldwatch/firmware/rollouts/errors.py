from __future__ import annotations

from fieldwatch.core.errors import Conflict, NotFound, ValidationFailed


class RolloutNotFound(NotFound):
    slug, title = "rollout-not-found", "Rollout not found"


class RolloutStateConflict(Conflict):
    slug, title = "rollout-state-conflict", "Not possible in the rollout's present state"


class NothingToUpdate(Conflict):
    slug, title = "rollout-has-no-devices", "No target device can take this update"


class TargetInvalid(ValidationFailed):
    slug, title = "rollout-target-invalid", "Invalid rollout target"


class WindowInvalid(ValidationFailed):
    slug, title = "rollout-window-invalid", "Invalid rollout window"
