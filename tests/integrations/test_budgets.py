"""Rate budgets kept before asking the vendor: a sync that would go over the vendor's
quota is spread over the window instead of refused; without a budget the vendor's 601
schedules a retry; a budget spent for long ends the run for a retry without asking."""

from __future__ import annotations

import pytest

from fieldwatch.integrations.connectors.catalogue import Quota
from fieldwatch.integrations.sync.budget import BUDGETS, MAX_WAIT_S, BudgetExhausted, Budgets
from fieldwatch.runtime import Runtime
from integration_helpers import connect_as, import_device
from standins.withings import Withings
from sync_helpers import runs

USER = "5151"
KIND = "withings"
STANDIN_USERS = [USER]

pytestmark = pytest.mark.usefixtures("fresh_budgets")


async def _scale(client, operator) -> str:
    connection = await connect_as(client, operator, USER, KIND)
    return await import_device(client, operator, connection, f"scale-{USER}", KIND,
                               sync_historical_days=1)  # fmt: skip


def _data_calls(vendor: Withings) -> int:
    return sum(1 for path, _ in vendor.calls if path in ("/measure", "/v2/measure"))


async def test_a_sync_over_the_quota_is_spread_not_refused(
    client, operator, withings, runtime: Runtime
) -> None:
    device = await _scale(client, operator)
    withings.app_limit = (4, 1.0)  # the vendor: 4 requests a second for the whole app
    withings.app_hits.clear()
    BUDGETS.configure(KIND, (Quota(3, 1, "app"),))  # ours: a little under it
    await runtime.sync.run_once()
    (run,) = await runs(runtime, device)
    assert run.status == "completed", run.error_message
    assert _data_calls(withings) >= 7  # more than a window's worth: it had to wait
    assert withings.refused == 0


async def test_without_a_budget_the_vendor_601_schedules_a_retry(
    client, operator, withings, runtime: Runtime
) -> None:
    device = await _scale(client, operator)
    withings.app_limit = (3, 60.0)
    withings.app_hits.clear()
    BUDGETS.configure(KIND, ())
    await runtime.sync.run_once()
    (first, retry) = await runs(runtime, device)
    assert withings.refused == 1 and _data_calls(withings) == 4
    assert first.status == "partial" and first.error_details["http_status"] == 429
    assert (retry.status, retry.retry_of) == ("retry_wait", first.id)


async def test_a_budget_spent_for_long_retries_later_without_asking(
    client, operator, withings, runtime: Runtime
) -> None:
    device = await _scale(client, operator)
    withings.app_hits.clear()
    BUDGETS.configure(KIND, (Quota(3, 60, "app"),))
    await runtime.sync.run_once()
    (first, retry) = await runs(runtime, device)
    assert _data_calls(withings) == 3 and withings.refused == 0
    assert first.status == "partial"
    assert first.error_message.startswith("the rate budget for the vendor is spent")
    assert first.error_details["retry_after"] > MAX_WAIT_S
    assert retry.status == "retry_wait" and retry.not_before is not None
    assert first.end_time is not None
    assert (retry.not_before - first.end_time).total_seconds() >= MAX_WAIT_S


async def test_user_budgets_are_per_connection_and_app_budgets_shared() -> None:
    now = [0.0]
    budgets = Budgets(clock=lambda: now[0])
    budgets.configure("oura", (Quota(2, 100, "user"),))
    budgets.configure("withings", (Quota(2, 100, "app"),))
    for connection in ("a", "a", "b", "b"):
        await budgets.take("oura", connection)  # two each: a budget per connection
    with pytest.raises(BudgetExhausted) as caught:
        await budgets.take("oura", "a")
    assert caught.value.status == 429 and caught.value.retry_after == pytest.approx(105)
    await budgets.take("withings", "a")
    await budgets.take("withings", "b")
    with pytest.raises(BudgetExhausted):  # the app's budget is shared by its connections
        await budgets.take("withings", "c")
    now[0] = 106.0  # the window slid by
    await budgets.take("oura", "a")
    await budgets.take("withings", "c")


async def test_a_vendor_retry_after_pauses_the_app_budget_only() -> None:
    now = [0.0]
    budgets = Budgets(clock=lambda: now[0])
    budgets.configure("withings", (Quota(100, 60, "app"),))
    budgets.configure("oura", (Quota(100, 60, "user"),))
    await budgets.take("withings", "a")
    await budgets.take("oura", "a")
    budgets.pause("withings", 40)
    budgets.pause("oura", 40)
    with pytest.raises(BudgetExhausted) as caught:
        await budgets.take("withings", "b")
    assert caught.value.retry_after == pytest.approx(40)
    await budgets.take("oura", "a")  # per-user budgets are not held by an app-wide wait
    now[0] = 41.0
    await budgets.take("withings", "b")
