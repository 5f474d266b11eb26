from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from monitor.ingestion.rollups import fold_all, fold_rollups
from monitor.models import RegisteredModel


class Command(BaseCommand):
    help = "Count the queries logged since the last fold into the dashboards' rollups now (beat does it every 30 s)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--model", help="one model's slug (default: every model)")

    def handle(self, *args, **options) -> None:
        if options["model"]:
            model = RegisteredModel.objects.filter(slug=options["model"]).first()
            if model is None:
                raise CommandError(f"no model with slug {options['model']!r}")
            folded = [fold_rollups(model)]
        else:
            folded = fold_all()
        for item in folded:
            self.stdout.write(f"{item.model}: {item.queries:,} queries folded; rollups count up to query #{item.folded_to_id}")
