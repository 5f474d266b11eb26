from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from monitor.ingestion import retention
from monitor.models import RegisteredModel


class Command(BaseCommand):
    help = ("Drop raw queries older than each model's retention_days (whole partitions on PostgreSQL) and print "
            "what was dropped; rows the scanner has not read yet wait. Rollups, findings, alerts and audits stay.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--model", help="one model's slug (default: every model)")
        parser.add_argument("--dry-run", action="store_true", help="print what would be dropped, drop nothing")

    def handle(self, *args, **options) -> None:
        slug = options["model"]
        if slug is not None and not RegisteredModel.objects.filter(slug=slug).exists():
            raise CommandError(f"no model with slug {slug!r}")
        if not options["dry_run"]:
            retention.maintain_partitions()  # DEFAULT's unexpired rows into their own partitions first
        for result in retention.enforce_all(model_slug=slug, dry_run=options["dry_run"]):
            for line in result.lines():
                self.stdout.write(line)
