"""Alert severities in rank order: the one definition shared by the detectors (pure, no Django), the alert
tables, the outbox and every page. Sorting the strings puts "critical" first ascending and last descending, which
once let a digest's row cap drop critical alerts: order by `rank` (in SQL, `Alert.objects.by_severity()`)."""
from __future__ import annotations

from enum import StrEnum


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return RANK[self]

    @classmethod
    def choices(cls) -> list[tuple[str, str]]:
        """For a Django field's `choices`."""
        return [(severity.value, severity.value) for severity in cls]

    def raised(self) -> Severity:
        return ORDERED[min(len(ORDERED) - 1, self.rank + 1)]

    def lowered(self) -> Severity:
        return ORDERED[max(0, self.rank - 1)]


# Explicit, not the declaration order: the rank is what alerts are sorted and compared by.
RANK: dict[Severity, int] = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}
ORDERED: tuple[Severity, ...] = tuple(sorted(Severity, key=RANK.__getitem__))
SEVERITIES: tuple[str, ...] = tuple(severity.value for severity in ORDERED)
SEVERITY_RANK: dict[str, int] = {severity.value: rank for severity, rank in RANK.items()}
