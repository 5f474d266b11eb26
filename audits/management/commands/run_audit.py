from __future__ import annotations

import threading
import time

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection

from audits import runner
from audits.attacks.verdict import VerdictState
from audits.models import AuditRun, RunStatus
from audits.scheduling import request_audit
from monitor.models import RegisteredModel


def bar(percent: int, width: int = 30) -> str:
    filled = width * percent // 100
    return "[" + "#" * filled + "-" * (width - filled) + f"] {percent:3d}%"


class Command(BaseCommand):
    help = "Queue an audit of a model; with --wait, run it here with a progress bar and print the headline."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--wait", action="store_true", help="run now in this process instead of on a worker")
        parser.add_argument("--remediation", action="store_true",
                            help="also train and attack hardened candidates of the model (scikit-learn models)")

    def handle(self, *args, **options) -> None:
        model = RegisteredModel.objects.filter(slug=options["slug"]).first()
        if model is None:
            raise CommandError(f"no model with slug {options['slug']!r}")
        if not options["wait"]:
            run = request_audit(model, remediation=options["remediation"] or None)
            self.stdout.write(f"audit {run.pk} of {model.slug} queued; follow it at /audits/{run.pk}/")
            return
        run = request_audit(model, enqueue=False, remediation=options["remediation"] or None)

        def work() -> None:
            try:
                runner.execute(run.pk)
            finally:
                connection.close()

        thread = threading.Thread(target=work)
        thread.start()
        last = None
        while thread.is_alive():
            current = AuditRun.objects.values_list("progress", "step").get(pk=run.pk)
            if current != last:
                self.stdout.write(f"\r{bar(current[0])} {current[1][:60]:<60}", ending="")
                self.stdout.flush()
                last = current
            time.sleep(0.3)
        thread.join()
        run.refresh_from_db()
        self.stdout.write(f"\r{bar(run.progress)} {run.step:<60}")
        if run.status != RunStatus.DONE:
            raise CommandError(f"audit {run.pk} {run.status}: {run.error}")
        self.stdout.write(self.style.SUCCESS(f"audit {run.pk} of {model.slug} done"))
        headline = run.headline or {}
        for fpr, rate in (headline.get("tpr_at_fpr") or {}).items():
            flag = "" if rate["reliable"] else "  (too few non-members for this FPR: unreliable)"
            expected = rate.get("expected_false_positives")
            rests = f", rests on {expected:g} expected false positives" if expected is not None else ""
            self.stdout.write(f"  TPR at {float(fpr):.1%} FPR: {rate['value']:.2%} [{rate['low']:.2%}, {rate['high']:.2%}] "
                              f"by {rate['attack']}{rests}{flag}")
        if headline:
            self.stdout.write(f"  AUC {headline['auc']:.3f} ({headline.get('auc_attack')}), "
                              f"ε lower bound {headline['epsilon_lower']:.2f} ({headline.get('epsilon_attack')})")
        verdict = run.policy_result or {}
        if verdict.get("passed"):
            self.stdout.write(self.style.SUCCESS("  within the model's audit policy"))
        elif run.verdict == VerdictState.INCONCLUSIVE:
            self.stdout.write(self.style.WARNING("  INCONCLUSIVE — weak audit: the figures may under-report the leakage"))
            for reason in verdict.get("weak_audit", []):
                self.stdout.write(self.style.WARNING(f"    {reason}"))
        else:
            for breach in verdict.get("breaches", []):
                self.stdout.write(self.style.WARNING(f"  BREACH {breach['metric']}: {breach['value']:.3g} > {breach['limit']:.3g}"))
            if verdict.get("regression"):
                self.stdout.write(self.style.WARNING(f"  REGRESSION: {verdict['regression']}"))
        self.print_remediation((run.result or {}).get("remediation"))

    def print_remediation(self, table: dict | None) -> None:
        if not table:
            return
        self.stdout.write("remediation (accuracy on held-out non-members; TPR at 1 % FPR with its 95 % interval):")
        rows = [("today's model", table.get("current"))] + [
            (", ".join(f"{k}={v}" for k, v in c["setting"].items()), c) for c in table.get("candidates") or []]
        for index, (label, row) in enumerate(rows):
            if not row:
                continue
            mark = " <- recommended" if index - 1 == table.get("recommended") and index else ""
            if row.get("error"):
                self.stdout.write(f"  {label:<55} failed: {row['error']}")
                continue
            rate = row["tpr_at_1pct_fpr"]
            cost = f"{row['accuracy_cost']:+.4f}" if index else "      "
            self.stdout.write(f"  {label:<55} acc {row['accuracy']:.4f} {cost}  TPR@1% {rate['value']:.2%} "
                              f"[{rate['low']:.2%}, {rate['high']:.2%}]  {row['seconds']:.0f} s{mark}")
        for note in table.get("notes") or []:
            self.stdout.write(f"  note: {note}")
        artifact = table.get("artifact") or {}
        if artifact.get("available"):
            self.stdout.write(f"  recommended model: {artifact['download']} (sha256 {artifact['sha256']})")
