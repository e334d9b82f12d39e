"""A rollout's figures, folded from the per-state counts of its targets; and the
verdict on a wave's failures."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from fieldwatch.firmware.rollouts.schemas import Figures


def add(figures: Figures, released: bool, state: str | None, reason: str | None, n: int) -> None:
    figures.targets += n
    if not released:
        figures.pending += n
    elif state is None:
        figures.skipped += n
    elif state == "completed":
        figures.completed += n
    elif state == "failed":
        figures.failed += n
        key = reason or "unknown"
        figures.failed_by_reason[key] = figures.failed_by_reason.get(key, 0) + n
    elif state == "cancelled":
        figures.cancelled += n
    elif state == "expired":
        figures.expired += n
    else:
        figures.in_progress[state] = figures.in_progress.get(state, 0) + n
        figures.in_progress_total += n


def fold(
    rows: Iterable[tuple[int, bool, str | None, str | None, int]],
) -> tuple[Figures, dict[int, Figures]]:
    """The overall figures and those of each wave."""
    overall, waves = Figures(), dict[int, Figures]()
    for wave, released, state, reason, n in rows:
        add(overall, released, state, reason, n)
        add(waves.setdefault(wave, Figures()), released, state, reason, n)
    return overall, waves


@dataclass(frozen=True, slots=True)
class Verdict:
    stop: bool
    reason: str | None = None


def _pct(share: float) -> str:
    return f"{share * 100:.3g}%"


def judge_running(number: int, judged: Figures, *, threshold: float, min_finished: int) -> Verdict:
    """While a wave runs: stop once ``min_finished`` of its judged updates finished
    (completed or failed) and the failed share is above the threshold."""
    finished = judged.completed + judged.failed
    if finished < min_finished or finished == 0 or judged.failed / finished <= threshold:
        return Verdict(False)
    return Verdict(
        True,
        f"wave {number}: {judged.failed} of {finished} finished updates failed "
        f"({_pct(judged.failed / finished)}), above the {_pct(threshold)} threshold"
        + _reasons(judged),
    )


def judge_ended(number: int, judged: Figures, *, threshold: float) -> Verdict:
    """When all of a wave's updates are final: only completed ones count as success; the
    share of the others (failed or expired; cancelled ones were stopped on purpose)
    must not be above the threshold, however few they are."""
    bad = judged.failed + judged.expired
    ended = judged.completed + bad
    if ended == 0 or bad / ended <= threshold:
        return Verdict(False)
    return Verdict(
        True,
        f"wave {number} ended with {bad} of {ended} updates not completed "
        f"({judged.failed} failed, {judged.expired} expired; {_pct(bad / ended)}), above "
        f"the {_pct(threshold)} threshold" + _reasons(judged),
    )


def judge(
    number: int, judged: Figures, whole: Figures, *, threshold: float, min_finished: int
) -> Verdict:
    """What the engine would decide on the wave now: the running verdict, and once all
    of its updates are final (``whole``: the whole wave), the ended one."""
    verdict = judge_running(number, judged, threshold=threshold, min_finished=min_finished)
    if verdict.stop or whole.pending or whole.in_progress_total:
        return verdict
    return judge_ended(number, judged, threshold=threshold)


def _reasons(judged: Figures) -> str:
    if not judged.failed_by_reason:
        return ""
    parts = ", ".join(f"{k}: {v}" for k, v in sorted(judged.failed_by_reason.items()))
    return f" ({parts})"
