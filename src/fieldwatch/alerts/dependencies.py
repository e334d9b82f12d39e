"""The alerts domain's request dependencies."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from fieldwatch.alerts.engine import AlertEngine
from fieldwatch.core.components import Slot

ALERT_ENGINE: Slot[AlertEngine] = Slot("alert_engine")
AlertEngineDep = Annotated[AlertEngine, Depends(ALERT_ENGINE)]
