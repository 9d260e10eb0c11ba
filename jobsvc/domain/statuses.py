"""GitLab's job statuses, their groups, and the composite status of a set of jobs."""

from __future__ import annotations

from collections.abc import Iterable

# every status a job can have, in GitLab's order (Ci::HasStatus::AVAILABLE_STATUSES)
STATUSES = (
    "created",
    "waiting_for_resource",
    "preparing",
    "waiting_for_callback",
    "pending",
    "running",
    "success",
    "failed",
    "canceling",
    "canceled",
    "skipped",
    "manual",
    "scheduled",
)

COMPLETED = frozenset({"success", "failed", "canceled", "skipped"})
ACTIVE = frozenset({"waiting_for_resource", "preparing", "waiting_for_callback", "pending", "running"})
BLOCKED = frozenset({"manual", "scheduled"})
# queued at some point: these have a queued_at
QUEUED = ACTIVE | {"success", "failed", "canceling", "canceled"}
STARTED = frozenset({"running", "success", "failed", "canceling"})
FINISHED = frozenset({"success", "failed", "canceled"})  # these carry finished_at
# with allow_failure, these count as "success_with_warnings" and "ignored" (Composite#consume_status)
PASSED_WITH_WARNINGS = frozenset({"failed", "canceled"})
IGNORED = frozenset({"manual"})

__all__ = ["ACTIVE", "BLOCKED", "COMPLETED", "STATUSES", "composite"]


def composite(jobs: Iterable[tuple[str, bool]]) -> str | None:
    """Gitlab::Ci::Status::Composite over (status, allow_failure) pairs; None for no jobs."""
    seen: set[str] = set()
    for status, allow_failure in jobs:
        if allow_failure and status in PASSED_WITH_WARNINGS:
            seen.add("success_with_warnings")
        elif allow_failure and status in IGNORED:
            seen.add("ignored")
        else:
            seen.add(status)
    if not seen:
        return None

    def only_of(*names: str) -> bool:
        return seen <= set(names)

    def any_of(*names: str) -> bool:
        return bool(seen & set(names))

    if only_of("skipped", "ignored"):
        return "skipped"
    if only_of("success", "skipped", "success_with_warnings", "ignored"):
        return "success"
    if only_of("created", "success_with_warnings", "ignored"):
        return "created"
    if only_of("preparing", "success_with_warnings", "ignored"):
        return "preparing"
    if only_of("canceled", "success", "skipped", "success_with_warnings", "ignored"):
        return "canceled"
    if only_of("pending", "created", "skipped", "success_with_warnings", "ignored"):
        return "pending"
    if any_of("running", "pending"):
        return "running"
    if any_of("waiting_for_resource"):
        return "waiting_for_resource"
    if any_of("waiting_for_callback"):
        return "waiting_for_callback"
    if any_of("manual"):
        return "manual"
    if any_of("scheduled"):
        return "scheduled"
    if any_of("preparing"):
        return "preparing"
    if any_of("created"):
        return "running"
    if any_of("canceling"):
        return "canceling"
    return "failed"
