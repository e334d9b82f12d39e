"""The one-statement device reports (PostgreSQL's writing CTEs), built once per shape.

A device's state report is the hottest write of a rollout. Its statement is a few CTEs
(lock the update, change it, move the ledger command, keep the transition); building
that construct anew for every report cost more CPU than running it and left about 400
objects in reference cycles for the garbage collector each time (``bench_rollout.py
--garbage``). Each shape (which columns change, from which states, with or without a
transition) is built once with bound parameters and reused: SQLAlchemy also keeps its
compiled form, so a report only binds its values.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any, cast

from sqlalchemy import Select, Table, bindparam, insert, select, update
from sqlalchemy.orm import aliased

from fieldwatch.commands.models import ACKNOWLEDGED, PENDING, SENT, Command, CommandTransition
from fieldwatch.firmware.models import FirmwareUpdate

#: The transition row's columns, in the order the statements select them.
TRANSITION_COLUMNS = ["id", "command_id", "from_status", "to_status", "at", "attempt", "detail"]


def change_params(
    device_id: Any, update_id: Any, values: dict[str, Any], note: tuple[Any, ...] | None
) -> dict[str, Any]:
    """The bound values of ``change_and_note`` / ``acknowledge_with_command``
    (``note``: the transition's id, when and detail). No name is a column's: an UPDATE
    would take such a value for a SET of its own."""
    params = {"p_device": device_id, "p_update": update_id}
    params |= {f"v_{key}": value for key, value in values.items()}
    if note is not None:
        params["note_id"], params["note_at"], params["note_detail"] = note
    return params


@lru_cache(maxsize=64)
def change_and_note(columns: tuple[str, ...], from_states: tuple[str, ...], noted: bool) -> Select:
    """The device's update, if in ``from_states``, gets ``columns`` (bound as
    ``v_<column>``; ``state`` among them); with ``noted``, the command's transition at
    its current attempt is inserted when the state changed. Selects the updated row (as
    a ``FirmwareUpdate``) and the state it left."""
    changed = _locked_change(columns, from_states)
    stmt = select(aliased(FirmwareUpdate, changed), changed.c.previous)
    if noted:
        c = CommandTransition.__table__.c
        attempt = select(Command.attempts).where(Command.id == bindparam("p_update"))
        row = select(
            bindparam("note_id", type_=c.id.type), changed.c.command_id, changed.c.previous,
            bindparam("v_state", type_=c.to_status.type), bindparam("note_at", type_=c.at.type),
            attempt.scalar_subquery(), bindparam("note_detail", type_=c.detail.type),
        ).where(changed.c.previous != bindparam("v_state"))  # fmt: skip
        note = insert(CommandTransition).from_select(TRANSITION_COLUMNS, row).cte("noted")
        stmt = stmt.add_cte(note)
    return stmt


@lru_cache(maxsize=8)
def acknowledge_with_command(columns: tuple[str, ...]) -> Select:
    """The device's first report: its update (pending or sent) gets ``columns``, its
    ledger command (pending or sent) becomes acknowledged at ``note_at`` with the
    command's transition kept. Selects the update, the state it left, the command (None
    when it was past sent) and the status it left."""
    from_states = (PENDING, SENT)  # the same names in the ledger and here
    commands = cast(Table, Command.__table__)
    changed = _locked_change(columns, from_states)
    at = bindparam("note_at", type_=commands.c.updated_at.type)
    prior = (
        select(commands.c.id, commands.c.status)
        .where(commands.c.id == bindparam("p_update"), commands.c.status.in_(from_states))
        .with_for_update()
        .subquery("prior")
    )
    acked = (
        update(commands)
        .where(commands.c.id == prior.c.id, prior.c.id.in_(select(changed.c.command_id)))
        .values(status=ACKNOWLEDGED, acknowledged_at=at, updated_at=at)
        .returning(*commands.c, prior.c.status.label("command_previous"))
        .cte("acked")
    )
    c = CommandTransition.__table__.c
    row = select(
        bindparam("note_id", type_=c.id.type), acked.c.id, acked.c.command_previous,
        acked.c.status, at, acked.c.attempts, bindparam("note_detail", type_=c.detail.type),
    )  # fmt: skip
    noted = insert(CommandTransition).from_select(TRANSITION_COLUMNS, row).cte("noted")
    entities = (aliased(FirmwareUpdate, changed), aliased(Command, acked))
    return (
        select(entities[0], changed.c.previous, entities[1], acked.c.command_previous)
        .select_from(changed)
        .outerjoin(acked, acked.c.id == changed.c.command_id)
        .add_cte(noted)
    )


def _locked_change(columns: Sequence[str], from_states: Sequence[str]) -> Any:
    """The CTE ``changed``: the device's update (``p_device``, ``p_update``), locked if
    it is in one of ``from_states``, updated with ``v_<column>`` for ``columns``; its
    rows with the state it left (``previous``)."""
    table = cast(Table, FirmwareUpdate.__table__)
    old = (
        select(table.c.command_id, table.c.state)
        .where(
            table.c.command_id == bindparam("p_update"),
            table.c.device_id == bindparam("p_device"),
            table.c.state.in_(from_states),
        )
        .with_for_update()
        .cte("old")
    )
    return (
        update(table)
        .where(table.c.command_id == old.c.command_id)
        .values({name: bindparam(f"v_{name}", type_=table.c[name].type) for name in columns})
        .returning(*table.c, old.c.state.label("previous"))
        .cte("changed")
    )
