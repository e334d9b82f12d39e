"""Imports every domain's models so ``Base.metadata`` is complete (migrations, tests)."""

from fieldwatch.alerts import models as alert_models
from fieldwatch.auth import models as auth_models
from fieldwatch.commands import models as command_models
from fieldwatch.db.base import Base
from fieldwatch.devices import models as device_models
from fieldwatch.firmware import models as firmware_models
from fieldwatch.integrations import models as integration_models
from fieldwatch.monitoring import models as monitoring_models
from fieldwatch.system import models as system_models
from fieldwatch.telemetry import models as telemetry_models
from fieldwatch.webhooks import models as webhook_models

__all__ = [
    "Base",
    "alert_models",
    "auth_models",
    "command_models",
    "device_models",
    "firmware_models",
    "integration_models",
    "monitoring_models",
    "system_models",
    "telemetry_models",
    "webhook_models",
]
