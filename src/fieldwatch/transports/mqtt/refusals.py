"""MQTT messages dropped because the topic rules refuse them: counted by reason (for the
metrics, ``fieldwatch_mqtt_refused_total``) and logged at WARNING, at most once a
minute per client, with the client's name and the topic; never the payload.

Reasons: ``acl`` (the embedded broker refused a PUBLISH: not a topic the client may
publish to, or a control client naming a device outside its workspace), ``topic`` (the
gateway received a topic it does not know), ``unknown_device`` (a device topic naming
no device of this installation).
"""

from __future__ import annotations

import logging
from collections import Counter

from fieldwatch.core.ttlcache import TTLCache

log = logging.getLogger(__name__)

REASONS = ("acl", "topic", "unknown_device")
LOG_EVERY_S = 60.0


def _printable(text: str) -> str:
    return text[:200].encode("unicode_escape").decode()


class RefusedPublishes:
    """What was refused, by reason; one warning per client and minute."""

    def __init__(self, log_every_s: float = LOG_EVERY_S) -> None:
        self.counts: Counter[str] = Counter()
        self._told: TTLCache[str, bool] = TTLCache(log_every_s, max_entries=10_000)

    def refused(self, client: str, topic: str, reason: str) -> None:
        self.counts[reason] += 1
        if self._told.get(client) is not None:
            return
        self._told.put(client, True)
        log.warning(
            "MQTT publish refused (%s): client %s, topic %s (its next refusals within "
            "%g s are counted, not logged)",
            reason, _printable(client), _printable(topic), self._told.ttl_s,
        )  # fmt: skip
