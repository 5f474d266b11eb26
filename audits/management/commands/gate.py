"""`manage.py gate SLUG --artifact FILE`: audit a candidate beside the production model, in this process, and exit
as a CI step expects (0 pass or warn, 1 fail, 2 could not decide), writing the reports asked for."""
from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audits import gate_reports
from audits.gate import GateError, run_gate
from monitor.models import RegisteredModel

WRITERS = {kind: writer for kind, (writer, _, _) in gate_reports.REPORTS.items()}


class Command(BaseCommand):
    help = "Gate a candidate artifact against a registered model's production artifact (exit 0 pass, 1 fail, 2 undecided)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--artifact", required=True, help="the candidate: skops, XGBoost .json/.ubj or LightGBM .txt")
        parser.add_argument("--junit", help="write JUnit XML here")
        parser.add_argument("--sarif", help="write SARIF 2.1.0 here")
        parser.add_argument("--summary", help="write a Markdown summary here (a pull-request comment)")
        parser.add_argument("--json", help="write the JSON report here")
        parser.add_argument("--alpha", type=float, help="significance level (default: the policy's, else 0.05)")

    def handle(self, *args, **options) -> None:
        model = RegisteredModel.objects.filter(slug=options["slug"]).first()
        if model is None:
            raise CommandError(f"no model with slug {options['slug']!r}", returncode=2)
        alpha = options["alpha"]
        if alpha is not None and not 0 < alpha < 0.5:
            raise CommandError(f"--alpha {alpha}: give a significance level between 0 and 0.5", returncode=2)
        path = Path(options["artifact"])
        if not path.is_file():
            raise CommandError(f"--artifact {path}: no such file", returncode=2)
        outputs = {kind: Path(options[kind]) for kind in WRITERS if options.get(kind)}
        for kind, target in outputs.items():
            if not target.parent.is_dir():
                raise CommandError(f"--{kind} {target}: the folder {target.parent} does not exist", returncode=2)
        self.stdout.write(f"gating {path.name} against {model.slug} v{model.version} (both audited on the same "
                          "records; this takes a few minutes) …")
        try:
            outcome = run_gate(model, artifact=path.read_bytes(), artifact_name=path.name, alpha=alpha)
        except GateError as exc:
            raise CommandError(str(exc), returncode=2) from exc
        report = outcome.report()
        for kind, target in outputs.items():
            target.write_text(WRITERS[kind](report), encoding="utf-8")
        self.stdout.write(gate_reports.markdown(report))
        self.stdout.write(f"verdict: {report['verdict']} (exit {report['exit_code']}) in {report['seconds']:.0f} s")
        if report["exit_code"]:
            raise SystemExit(report["exit_code"])
