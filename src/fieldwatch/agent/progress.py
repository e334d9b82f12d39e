"""What ``fieldwatch simulate`` prints: a live progress line (redrawn in place on a
terminal, one line per report otherwise) and the final summary, each figure named for
what was verified: "stored" only for readings the server acknowledged after its commit
(WebSocket, HTTP) or that the API shows (MQTT, "confirmed"); "published" for readings
only an MQTT broker acknowledged. Firmware updates count as completed or failed only
once the API shows them so (with the reasons it gives for the failures); power cuts are
those the simulator made."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import TextIO

from fieldwatch.agent.confirm import Confirmer
from fieldwatch.agent.simulator import Stats

CLEAR_LINE = "\r\x1b[K"


@dataclass
class Figures:
    """The totals of a run as they are reported."""

    stats: Stats
    confirmer: Confirmer | None = None
    updates_confirmed: bool = False  # the API can be asked what became of the updates
    #: The run cuts power mid-download (``--power-loss-rate``): the live line counts the
    #: cuts even while there are none.
    power_cuts: bool = False

    @property
    def mqtt(self) -> bool:
        return self.stats.transport == "mqtt"

    @property
    def stored(self) -> int | None:
        """Readings known to be committed; None when nothing could confirm them."""
        if not self.mqtt:
            return self.stats.accepted
        return self.confirmer.confirmed if self.confirmer is not None else None

    def line(self) -> str:
        s = self.stats
        rate = s.accepted / max(1e-9, time.monotonic() - s.started)
        parts = [f"{s.online}/{s.devices} devices online"]
        if self.mqtt:
            parts.append(f"{s.accepted} readings published ({rate:.0f}/s)")
            stored = self.stored
            parts.append("not confirmed" if stored is None else f"{stored} confirmed stored")
        else:
            parts.append(f"{s.accepted} readings stored ({rate:.0f}/s)")
        parts += [f"{s.errors} errors", f"{s.commands} commands answered"]
        if s.updates is not None and s.updates.taken:
            parts.append(self.updates())
            if self.power_cuts or s.updates.power_losses:
                parts.append(f"{s.updates.power_losses} power cuts mid-download")
        return ", ".join(parts)

    def updates(self) -> str:
        tally = self.stats.updates
        assert tally is not None
        text = f"{len(tally.taken)} firmware updates taken"
        if not self.updates_confirmed:
            return text + " (outcome not confirmed: that needs --api-key or --email)"
        return text + f" ({tally.completed} completed, {tally.failed} failed per the server)"

    def summary(self, broker: str | None) -> list[str]:
        s = self.stats
        tail = f"{s.errors} errors, {s.commands} commands answered"
        if s.rejected or s.duplicates:
            tail = f"{s.rejected} rejected, {s.duplicates} duplicates, " + tail
        if not self.mqtt:
            return [f"Done: {s.accepted} readings stored (acknowledged by the server after "
                    f"its commit), {tail}.", *self._update_lines()]  # fmt: skip
        lines = [f"Done: {s.accepted} readings published to {broker}."]
        if self.confirmer is None:
            lines.append(f"  Not confirmed (reading them back needs --api-key or --email); {tail}.")
        else:
            lines.append(
                f"  {self.confirmer.confirmed} of the {s.sent} readings sent are stored "
                f"(confirmed through the API); {tail}."
            )
            if self.confirmer.last_error:
                lines.append(f"  Reading them back failed: {self.confirmer.last_error}")
            elif s.accepted and not self.confirmer.confirmed:
                lines.append(
                    f"  None reached Fieldwatch: is {broker} its broker? (--mqtt-url; the "
                    "embedded broker listens on FIELDWATCH_MQTT_PORT)"
                )
        if s.last_error:
            lines.append(f"  Last error: {s.last_error}")
        return lines + self._update_lines()

    def _update_lines(self) -> list[str]:
        tally = self.stats.updates
        if tally is None or not tally.taken:
            return []
        lines = [f"  Firmware: {self.updates()}; {tally.power_losses} power cuts mid-download."]
        if self.updates_confirmed and (reasons := tally.failure_reasons()):
            told = ", ".join(f"{count} {reason}" for reason, count in reasons)
            lines.append(f"  Why they failed, per the server: {told}.")
        if tally.last_error:
            lines.append(f"  Asking the API about them failed: {tally.last_error}")
        return lines

    @property
    def nothing_arrived(self) -> bool:
        """Readings were sent and none is known to be stored (when it can be known)."""
        return self.stats.sent > 0 and self.stored == 0


class Progress:
    """The live line: redrawn in place on a terminal, else printed once per report."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.tty = self.out.isatty()
        self.drawn = False

    @property
    def every_s(self) -> float:
        """How often to report: every second on a terminal, else every ten."""
        return 1.0 if self.tty else 10.0

    def show(self, figures: Figures) -> None:
        if self.tty:
            self.out.write(CLEAR_LINE + figures.line())
            self.drawn = True
        else:
            self.out.write("  " + figures.line() + "\n")
        self.out.flush()

    def note(self, text: str) -> None:
        self.end_line()
        self.out.write(text + "\n")
        self.out.flush()

    def end_line(self) -> None:
        if self.drawn:
            self.out.write("\n")
            self.drawn = False
