"""'Was this person's record exposed?': the lookup and the CSV agree with the audit's own per-record ranking, the
roles are enforced, unknown ids answer 404, and every lookup is in the security trail (who asked about whom)."""
from __future__ import annotations

import csv
import io

import pytest

from audits import runner
from audits.exposure import load_ranking
from audits.models import AuditPolicy
from audits.scheduling import request_audit
from monitor.trail.models import TrailEntry
from tests.factories import make_audited_model, user_token

pytestmark = pytest.mark.django_db


@pytest.fixture
def audited():
    model = make_audited_model(n=200)
    run = runner.execute(request_audit(model, enqueue=False).pk)
    assert run.status == "done", run.error
    return model, run


def _get(client, path, role):
    return client.get(path, HTTP_AUTHORIZATION=f"Bearer {user_token(role=role)}")


def test_the_lookup_matches_the_audits_own_ranking(client, audited):
    model, run = audited
    leader = run.leading_attack()
    ranking = load_ranking(run.exposure_rankings.get(attack=leader["name"]))
    assert ranking.n_members == run.result["config"]["n_members"] == 200
    # The audit's own most-exposed list is the ranking's top: position i ↔ rank i + 1, through HTTP.
    for position, record_id in enumerate(leader["top_exposed"][:5]):
        response = _get(client, f"/api/v1/models/{model.slug}/records/{record_id}/exposure", "compliance")
        assert response.status_code == 200, response.content
        latest = response.json()["audits"][0]
        assert latest["audit_id"] == run.pk and latest["evaluated"] is True
        assert latest["attack"] == leader["name"] and latest["leading_attack"] is True
        assert latest["rank"] == position + 1 and latest["most_exposed"] is True
        assert latest["percentile"] == pytest.approx(100.0 * (200 - position) / 200)
        assert {a["attack"] for a in latest["attacks"]} == {a["name"] for a in run.attack_results}
    # Ranks follow the stored scores: a higher score never ranks below a lower one.
    order = ranking.ranks.argsort()
    assert (ranking.scores[order][:-1] >= ranking.scores[order][1:]).all()
    # The members an attacker at 1 % FPR would call members are the audit's TPR at 1 % FPR.
    flagged = (ranking.scores > ranking.thresholds["0.01"]).mean()
    assert flagged == pytest.approx(leader["tpr_at_fpr"]["0.01"]["value"], abs=1 / 200 + 1e-9)
    # The least exposed record is ranked last.
    last = ranking.ids[int(ranking.ranks.argmax())]
    body = _get(client, f"/api/v1/models/{model.slug}/records/{last}/exposure", "security").json()
    assert body["audits"][0]["rank"] == 200 and body["audits"][0]["most_exposed"] is False


def test_roles_unknown_ids_and_the_trail(client, audited):
    model, run = audited
    record_id = run.most_exposed_ids()[0]
    path = f"/api/v1/models/{model.slug}/records/{record_id}/exposure"
    assert _get(client, path, "viewer").status_code == 403
    assert client.get(path).status_code == 401
    assert _get(client, path, "admin").status_code == 200
    unknown = _get(client, f"/api/v1/models/{model.slug}/records/no-such-person/exposure", "compliance")
    assert unknown.status_code == 404 and "no-such-person" in unknown.json()["error"]
    assert _get(client, f"/api/v1/models/nope/records/{record_id}/exposure", "compliance").status_code == 404
    lookups = TrailEntry.objects.filter(action="exposure.lookup").order_by("seq")
    assert [(e.after["record_id"], e.after["known"]) for e in lookups] == [(record_id, True), ("no-such-person", False)]
    assert lookups[0].actor_name.startswith("admin")


def test_a_member_not_sampled_for_evaluation_is_known_but_not_evaluated(client):
    model = make_audited_model(n=200)
    AuditPolicy.objects.filter(pk=AuditPolicy.objects.ensure(model).pk).update(max_eval_records=100)
    run = runner.execute(request_audit(model, enqueue=False).pk)
    evaluated = set(load_ranking(run.exposure_rankings.first()).ids)
    outside = next(str(i) for i in range(1, 201) if str(i) not in evaluated)
    body = _get(client, f"/api/v1/models/{model.slug}/records/{outside}/exposure", "compliance").json()
    assert body["audits"][0]["evaluated"] is False and "sampled" in body["audits"][0]["reason"]


def test_the_csv_lists_every_evaluated_member_by_rank_and_no_values(client, audited):
    model, run = audited
    response = _get(client, f"/api/v1/models/{model.slug}/exposure.csv", "compliance")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert len(rows) == 200 and [int(r["rank"]) for r in rows] == list(range(1, 201))
    assert [r["record_id"] for r in rows[:20]] == run.most_exposed_ids()
    assert set(rows[0]) == {"record_id", "rank", "n_members", "percentile", "most_exposed", "flagged_at_1pct_fpr",
                            "flagged_at_0.1pct_fpr", "attack", "audit_id"}
    assert _get(client, f"/api/v1/models/{model.slug}/exposure.csv", "viewer").status_code == 403
    assert TrailEntry.objects.filter(action="exposure.export", after__rows=200).exists()


def test_rankings_are_kept_for_the_runs_a_lookup_reads_and_no_older():
    """A daily audit stores every member's rank; past the newest RUNS_LOOKED_UP finished runs the rankings go (the
    runs and their results stay), so a model audited for a year does not keep a year of rankings."""
    from datetime import timedelta

    from django.utils import timezone

    from audits.exposure import RUNS_LOOKED_UP, prune_rankings
    from audits.models import AuditRun, ExposureRanking, RunStatus

    model = make_audited_model(slug="yearly")
    start = timezone.now() - timedelta(days=RUNS_LOOKED_UP + 5)
    runs = [AuditRun.objects.create(model=model, status=RunStatus.DONE, finished_at=start + timedelta(days=i))
            for i in range(RUNS_LOOKED_UP + 3)]
    running = AuditRun.objects.create(model=model, status=RunStatus.RUNNING)
    for run in [*runs, running]:
        ExposureRanking.objects.create(run=run, attack="rmia", n_members=1, ciphertext=b"x")
    assert prune_rankings(model) == 3
    left = set(ExposureRanking.objects.filter(run__model=model).values_list("run_id", flat=True))
    assert left == {run.pk for run in runs[3:]} | {running.pk}
    assert AuditRun.objects.filter(model=model).count() == RUNS_LOOKED_UP + 4
    assert prune_rankings(model) == 0
