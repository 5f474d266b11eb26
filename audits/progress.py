"""An audit's progress on its run row: the attack core's (percent, step) callbacks written, throttled, as the
progress bar the run page polls and the heartbeat the reaper of stuck runs reads."""
from __future__ import annotations

import time

from django.db.models import QuerySet
from django.utils import timezone

from audits.attacks.audit import ProgressCallback
from audits.models import AuditRun, RunStatus

# At most one progress write per this many seconds; the first and last step are always written.
MIN_WRITE_INTERVAL = 0.5


class RowProgress:
    """The progress callback of one row being worked on (`rows`: that row while it runs, e.g. an audit run or a gate
    candidate), called as `progress(percent, step)`."""

    def __init__(self, rows: QuerySet) -> None:
        self.rows = rows
        self.written_at = 0.0

    def __call__(self, percent: int, step: str) -> None:
        now = time.monotonic()
        # Every step is a heartbeat; throttle the writes, not the liveness.
        if now - self.written_at >= MIN_WRITE_INTERVAL or percent in (0, 100):
            self.rows.update(progress=max(0, min(100, int(percent))), step=step[:200], heartbeat_at=timezone.now())
            self.written_at = now


class RunProgress(RowProgress):
    """The progress callback of one audit run."""

    def __init__(self, run_id: int) -> None:
        super().__init__(AuditRun.objects.filter(id=run_id, status=RunStatus.RUNNING))
        self.run_id = run_id


class ScaledProgress:
    """Reports 0-100 % of one stage of a run as start-end % of the whole run."""

    def __init__(self, report: ProgressCallback, start: int, end: int) -> None:
        self.report, self.start, self.end = report, start, end

    def __call__(self, percent: int, step: str) -> None:
        self.report(self.start + (self.end - self.start) * max(0, min(100, int(percent))) // 100, step)
