from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError, CommandParser

from monitor.detection.calibration import calibrate_model
from monitor.detection.context import ScanError
from monitor.detection.scanning import scan_model
from monitor.models import AlertSource, RegisteredModel


class Command(BaseCommand):
    help = "Run the detectors over new queries now and print what they found."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--model", help="one model's slug (default: every model)")
        parser.add_argument("--calibrate", action="store_true",
                            help="recalibrate on a reference window first (use --exclude for known attackers)")
        parser.add_argument("--from-id", type=int, default=0, help="with --calibrate: start of the reference window")
        parser.add_argument("--to-id", type=int, help="with --calibrate: end of the reference window (query id)")
        parser.add_argument("--exclude", action="append", default=[], help="with --calibrate: a client to leave out")

    def handle(self, *args, **options) -> None:
        models = RegisteredModel.objects.all()
        if options["model"]:
            models = models.filter(slug=options["model"])
            if not models.exists():
                raise CommandError(f"no model with slug {options['model']!r}")
        for model in models:
            if options["calibrate"]:
                try:
                    state = calibrate_model(model, from_id=options["from_id"], to_id=options["to_id"],
                                            exclude_clients=tuple(options["exclude"]))
                except ScanError as exc:
                    raise CommandError(str(exc)) from exc
                window = state.calibration_window
                self.stdout.write(f"{model.slug}: calibrated on {window['queries']:,} queries from {window['clients']} clients "
                                  f"(ids {window['from_id']}-{window['to_id']}, {window['client_days']:,} client-days)")
                if advice := state.calibration_advice:
                    self.stdout.write(self.style.WARNING(f"  {advice}"))
            started = time.perf_counter()
            summary = scan_model(model)
            took = time.perf_counter() - started
            if summary.skipped:
                self.stdout.write(self.style.WARNING(f"{model.slug}: skipped — {summary.skipped}"))
                continue
            rate = f", {summary.scanned / took:,.0f} queries/s" if summary.scanned and took > 0 else ""
            self.stdout.write(f"{model.slug}: scanned {summary.scanned:,} queries in {took:.1f} s{rate}; "
                              f"{summary.findings} finding(s), {summary.new_alerts} new alert(s); watermark #{summary.watermark}")
            for detector, count in sorted(summary.by_detector.items()):
                self.stdout.write(f"  {detector}: {count}")
            for alert in model.alerts.filter(source=AlertSource.DETECTOR).unresolved().by_severity("client_id")[:20]:
                self.stdout.write(f"  [{alert.severity}] {alert.kind} — {alert.client_id} (seen {alert.occurrences}×)")
