"""Imports every domain's models so ``Base.metadata`` is complete (migrations, tests)."""

from fieldwatch.auth import models as auth_models
from fieldwatch.db.base import Base
from fieldwatch.devices import models as device_models
from fieldwatch.inventory import models as inventory_models
from fieldwatch.monitoring import models as monitoring_models
from fieldwatch.telemetry import models as telemetry_models

__all__ = [
    "Base",
    "auth_models",
    "device_models",
    "inventory_models",
    "monitoring_models",
    "telemetry_models",
]
