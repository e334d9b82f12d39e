"""Fixtures the integration tests share: the vendors' stand-ins, served, and Fieldwatch
configured to use them; rate budgets unspent for the modules that ask for it.

A module names the stand-in's accounts in ``STANDIN_USERS`` (else the stand-in's own
default account). This directory is a package so that this file is not imported as the
top-level ``conftest``, which the test modules import ``problem``, ``Actor``… from.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from fieldwatch.core.settings import Settings
from fieldwatch.integrations.sync.budget import BUDGETS
from integration_helpers import oura_standin, withings_standin
from standins.vendor import Vendor
from standins.withings import Withings


def _accounts(request: pytest.FixtureRequest) -> dict[str, object]:
    """The stand-in's accounts: the test module's ``STANDIN_USERS``, if it names them."""
    users = getattr(request.module, "STANDIN_USERS", None)
    return {} if users is None else {"users": list(users)}


@pytest.fixture
async def oura(request: pytest.FixtureRequest, settings: Settings) -> AsyncIterator[Vendor]:
    async with oura_standin(settings, **_accounts(request)) as vendor:
        yield vendor


@pytest.fixture
async def withings(request: pytest.FixtureRequest, settings: Settings) -> AsyncIterator[Withings]:
    async with withings_standin(settings, **_accounts(request)) as vendor:
        yield vendor


@pytest.fixture
def fresh_budgets() -> Iterator[None]:
    """Budgets are kept per process: each test starts with them unspent. A module asks
    for it with ``pytestmark = pytest.mark.usefixtures("fresh_budgets")``."""
    BUDGETS.reset()
    yield
    BUDGETS.reset()
