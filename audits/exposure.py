"""'Was this person's record exposed?': each evaluated member's rank under every attack of a run, stored encrypted
when the run finishes, looked up by record id (every lookup goes to the security trail: who asked about whom),
and exported for the latest audit as ids and ranks only."""
from __future__ import annotations

import io
from collections.abc import Iterable
from typing import Any

import numpy as np

from audits.attacks.exposure import MemberExposure, entry, lookup
from audits.attacks.results import AuditResult
from audits.evidence.format import csv_bytes
from audits.models import AuditRun, ExposureRanking, RunStatus
from monitor.platform.crypto import data_fernet
from monitor.trail.models import TrailEntry

RUNS_LOOKED_UP = 50  # newest finished runs a lookup reports on
CSV_COLUMNS = ("record_id", "rank", "n_members", "percentile", "most_exposed", "flagged_at_1pct_fpr",
               "flagged_at_0.1pct_fpr", "attack", "audit_id")


class UnknownRecord(LookupError):
    """The record id is not one of the model's registered members."""


def store_rankings(run: AuditRun, result: AuditResult) -> None:
    fernet = data_fernet()
    for attack in result.attacks:
        exposure = attack.exposure
        if exposure is None:
            continue
        buffer = io.BytesIO()
        np.savez_compressed(buffer, ids=np.array(exposure.ids, dtype=str), ranks=exposure.ranks,
                            scores=exposure.scores, fprs=np.array(list(exposure.thresholds), dtype=str),
                            thresholds=np.array(list(exposure.thresholds.values()), dtype=np.float64))
        ExposureRanking.objects.update_or_create(run=run, attack=attack.name, defaults={
            "n_members": exposure.n_members, "ciphertext": fernet.encrypt(buffer.getvalue())})
    prune_rankings(run.model)


def prune_rankings(model: Any) -> int:
    """Keep the rankings of the runs a lookup reads (the model's newest RUNS_LOOKED_UP finished runs that have them):
    a daily audit stores 1-2 MB of them, which would otherwise grow for as long as the model is audited. Rankings of
    older finished runs are deleted; the runs and their results stay. Returns the rows deleted."""
    kept = list(_runs(model).values_list("pk", "finished_at"))
    if len(kept) < RUNS_LOOKED_UP:
        return 0
    oldest_kept = min(finished for _, finished in kept)
    deleted, _ = (ExposureRanking.objects.filter(run__model=model, run__status=RunStatus.DONE,
                                                 run__finished_at__lte=oldest_kept)
                  .exclude(run_id__in=[pk for pk, _ in kept]).delete())
    return deleted


def load_ranking(row: ExposureRanking) -> MemberExposure:
    clear = data_fernet().decrypt(bytes(row.ciphertext))
    with np.load(io.BytesIO(clear), allow_pickle=False) as npz:
        return MemberExposure(attack=row.attack, ids=tuple(npz["ids"].tolist()), ranks=npz["ranks"],
                              scores=npz["scores"], thresholds=dict(zip(npz["fprs"].tolist(),
                                                                        npz["thresholds"].tolist(), strict=True)))


def _runs(model: Any) -> Iterable[AuditRun]:
    return (model.audit_runs.filter(status=RunStatus.DONE, exposure_rankings__isnull=False).distinct()
            .order_by("-finished_at")[:RUNS_LOOKED_UP])


def record_exposure(model: Any, record_id: str, *, user: Any = None, ip: str | None = None) -> dict:
    """Per finished audit, newest first: the record's rank under the leading attack (and under each attack), its
    percentile, whether it was among the most exposed, and whether an attacker at each FPR would call it a member.

    Raises UnknownRecord if the id is not a registered member (the lookup is still recorded in the trail)."""
    record_id = str(record_id)
    audits = []
    for run in _runs(model):
        top_k = _top_k(run)
        leader = (run.leading_attack() or {}).get("name")
        per_attack = []
        for row in run.exposure_rankings.all().order_by("attack"):
            found = lookup(load_ranking(row), record_id, top_k=top_k)
            if found is not None:
                per_attack.append(found)
        entry: dict[str, Any] = {"audit_id": run.pk, "finished_at": run.finished_at, "model_version": run.model_version,
                                 "evaluated": bool(per_attack)}
        if per_attack:
            lead = next((found for found in per_attack if found["attack"] == leader), per_attack[0])
            entry.update({**lead, "leading_attack": lead["attack"] == leader, "attacks": per_attack})
        else:
            entry["reason"] = "not among the members this audit sampled for evaluation"
        audits.append(entry)
    known = any(entry["evaluated"] for entry in audits) or _is_member(model, record_id)
    # The id as asked, a NUL shown as \x00: PostgreSQL's JSON cannot hold one, and a lookup is recorded all the same.
    TrailEntry.record(action="exposure.lookup", actor=user, ip=ip, obj=model,
                      after={"model": model.slug, "record_id": record_id[:128].replace("\x00", "\\x00"), "known": known})
    if not known:
        raise UnknownRecord(f"no member record with id {record_id!r:.140} is registered for {model.slug}")
    return {"model": model.slug, "record_id": record_id, "audits": audits}


def _is_member(model: Any, record_id: str) -> bool:
    members = model.datasets.filter(kind="members").first()
    return members is not None and record_id in set(members.load().record_ids.tolist())


def exposure_csv(model: Any, *, user: Any = None, ip: str | None = None) -> tuple[AuditRun | None, bytes]:
    """Every evaluated member's exposure under the latest audit's leading attack, most exposed first; ids and
    ranks only (cells that could start a spreadsheet formula are escaped)."""
    run = next(iter(_runs(model)), None)
    rows: list[dict] = []
    if run is not None:
        leader = (run.leading_attack() or {}).get("name")
        stored = run.exposure_rankings.filter(attack=leader).first() or run.exposure_rankings.order_by("attack").first()
        if stored is not None:
            ranking = load_ranking(stored)
            top_k = _top_k(run)
            for i in np.argsort(ranking.ranks, kind="stable"):
                found = entry(ranking, int(i), top_k=top_k)
                flagged = found.pop("flagged_at_fpr")
                rows.append({**found, "record_id": ranking.ids[i], "flagged_at_1pct_fpr": flagged.get("0.01", False),
                             "flagged_at_0.1pct_fpr": flagged.get("0.001", False), "audit_id": run.pk})
    TrailEntry.record(action="exposure.export", actor=user, ip=ip, obj=model,
                      after={"model": model.slug, "audit_run": run.pk if run else None, "rows": len(rows)})
    return run, csv_bytes(list(CSV_COLUMNS), rows)


def csv_filename(model: Any, run: AuditRun | None) -> str:
    return f"{model.slug}-exposure-audit-{run.pk}.csv" if run else f"{model.slug}-exposure-no-audit.csv"


def _top_k(run: AuditRun) -> int:
    return int(((run.result or {}).get("config") or {}).get("top_k") or len(run.most_exposed_ids()) or 20)
