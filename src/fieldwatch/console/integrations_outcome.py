"""What the connections page says after a redirect (post, redirect, get): the outcome of
an import, a manual sync, a disconnect or a connect that came back without a
connection, from the address's query. Only known codes, numbers and ids are read from
it; the sentences are ours, never the address's text."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from fieldwatch.integrations.connections.service import OAUTH_CODE
from fieldwatch.integrations.connectors.catalogue import CONNECTORS
from fieldwatch.integrations.models import Connection

#: Why a connect came back without a connection (the callback's ``?error=``).
CONNECT_ERRORS = {
    "access_denied": "{title}: the account holder did not grant access, so nothing was connected.",
    "denied": "{title} did not grant access{code}: nothing was connected.",
    "expired": "The authorisation request expired or was used already: connect {title} again.",
    "refused": "{title} refused the authorisation{code}: connect again.",
    "unreachable": "{title} could not be reached: try connecting again in a moment.",
    "unavailable": "{title} cannot be connected now: see the integrations page.",
}
#: Why an import or a manual sync was refused (``?refused=``).
REFUSALS = {
    "sync_open": "A sync of this device is queued or running already: follow it in the "
    "sync history.",
    "needs_auth": "The connection needs authorising again first.",
    "unreachable": "The vendor could not be reached: try again in a moment.",
    "refused": "The vendor refused: try again, or authorise the connection again.",
}
NUMBER = re.compile(r"\d{1,12}")


def _uuid(raw: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(raw or "")
    except ValueError:
        return None


def _count(raw: str | None) -> int:
    return int(raw) if raw and NUMBER.fullmatch(raw) else 0


def connect_error(query: Mapping[str, str]) -> str | None:
    template = CONNECT_ERRORS.get(query.get("error") or "")
    if template is None:
        return None
    info = CONNECTORS.get(query.get("connector") or "")
    code = query.get("vendor_error") or ""
    shown = f" ({code})" if code and OAUTH_CODE.fullmatch(code) else ""
    return template.format(title=info.title if info else "The vendor", code=shown)


def _disconnected(query: Mapping[str, str], rows: Sequence[Connection]) -> str:
    of = _uuid(query.get("of"))
    found = [c for c in rows if c.id == of]
    info = CONNECTORS.get(found[0].connector) if found else None
    vendor = info.vendor if info else "the vendor"
    said = ["The connection is disconnected: its devices no longer sync."]
    if query.get("vendor") == "revoked":
        said.append(f"The grant was revoked at {vendor}.")
    else:
        said.append(f"The grant was not revoked at {vendor} (it has no way to, or did not "
                    "answer): the account holder can remove the app there.")  # fmt: skip
    if query.get("done") == "purged":
        deleted = _count(query.get("deleted"))
        said.append(f"{deleted:,} synced {'reading' if deleted == 1 else 'readings'} deleted.")
    return " ".join(said)


def _done(query: Mapping[str, str], rows: Sequence[Connection]) -> dict[str, Any]:
    done = query.get("done") or ""
    if done == "imported":
        made = _count(query.get("count"))
        if not made:
            return {"notice": "Every device of this account is imported already."}
        word = "device" if made == 1 else "devices"
        return {"notice": f"{made} {word} imported: the first sync is due now."}
    if done == "queued":
        return {"notice": "A sync of the device is queued.", "queued_run": _uuid(query.get("run"))}
    if done in ("disconnected", "purged"):
        return {"notice": _disconnected(query, rows)}
    if done == "consent":
        return {"notice": "The consent is saved: later syncs fetch only the data types shared."}
    return {}


def outcome(query: Mapping[str, str], rows: Sequence[Connection]) -> dict[str, Any]:
    """The page's notice or problem (and what it is next to: ``problem_of``)."""
    out: dict[str, Any] = {"notice": None, "problem": connect_error(query)}
    out.update(_done(query, rows))
    refused = REFUSALS.get(query.get("refused") or "")
    of = _uuid(query.get("of"))
    if refused and of is not None:
        out.update(problem=refused, problem_of=str(of))
    return out
