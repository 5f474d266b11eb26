"""An audit's progress on its run row: the attack core's (percent, step) callbacks written, throttled, as the
progress bar the run page polls and the heartbeat the reaper of stuck runs reads."""
from __future__ import annotations

import time

from django.utils import timezone

from audits.attacks.audit import ProgressCallback
from audits.models import AuditRun, RunStatus

# At most one progress write per this many seconds; the first and last step are always written.
MIN_WRITE_INTERVAL = 0.5


class RunProgress:
    """The progress callback of one run (call it as `progress(percent, step)`)."""

    def __init__(self, run_id: int) -> None:
        self.run_id = run_id
        self.written_at = 0.0

    def __call__(self, percent: int, step: str) -> None:
        now = time.monotonic()
        # Every step is a heartbeat; throttle the writes, not the liveness.
        if now - self.written_at >= MIN_WRITE_INTERVAL or percent in (0, 100):
            AuditRun.objects.filter(id=self.run_id, status=RunStatus.RUNNING).update(
                progress=max(0, min(100, int(percent))), step=step[:200], heartbeat_at=timezone.now())
            self.written_at = now


class ScaledProgress:
    """Reports 0-100 % of one stage of a run as start-end % of the whole run."""

    def __init__(self, report: ProgressCallback, start: int, end: int) -> None:
        self.report, self.start, self.end = report, start, end

    def __call__(self, percent: int, step: str) -> None:
        self.report(self.start + (self.end - self.start) * max(0, min(100, int(percent))) // 100, step)
