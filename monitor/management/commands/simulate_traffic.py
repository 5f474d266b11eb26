from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from monitor.demo.simulation import ATTACKS, ApiClient, Plan, build_traffic, send
from monitor.models import ApiToken, RegisteredModel


class Command(BaseCommand):
    help = "Post benign and attack traffic for a model through the real HTTP API."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--model", required=True)
        parser.add_argument("--benign-clients", type=int, default=50)
        parser.add_argument("--hours", type=float, default=24.0, help="span of the simulated traffic, ending now")
        parser.add_argument("--attack", action="append", default=[], choices=ATTACKS, help="repeat for several attackers")
        parser.add_argument("--accounts", type=int, default=1, help="split each attacker over this many accounts")
        parser.add_argument("--targets", type=int, default=20, help="member records each attacker goes after")
        parser.add_argument("--via", choices=["queries", "predict"], default="queries")
        parser.add_argument("--url", default=settings.SITE_URL, help="where the API runs")
        parser.add_argument("--token", help="an ingestion token for the model (default: issue one)")
        parser.add_argument("--seed", type=int, default=0)

    def handle(self, *args, **options) -> None:
        model = RegisteredModel.objects.filter(slug=options["model"]).first()
        if model is None:
            raise CommandError(f"no model with slug {options['model']!r}")
        if options["benign_clients"] < 0 or options["hours"] <= 0 or options["accounts"] < 1:
            raise CommandError("--benign-clients ≥ 0, --hours > 0 and --accounts ≥ 1 are required")
        if options["via"] == "predict" and model.source == RegisteredModel.ENDPOINT:
            self.stdout.write("note: the gateway will call the model's remote endpoint for every request")
        token = options["token"] or ApiToken.issue(kind=ApiToken.INGEST, model=model)[1]
        plan = Plan(benign_clients=options["benign_clients"], hours=options["hours"], attacks=tuple(options["attack"]),
                    accounts=options["accounts"], seed=options["seed"], targets=options["targets"])
        traffic = build_traffic(model, plan)
        try:
            sent = send(model, traffic, ApiClient(options["url"], token), via=options["via"])
        except (OSError, RuntimeError) as exc:
            raise CommandError(f"could not post to {options['url']}: {exc}") from exc
        self.stdout.write(f"sent {sent:,} queries for {model.slug} via {options['via']}: "
                          f"{len(traffic.benign_clients)} benign clients, attackers: "
                          + (", ".join(f"{c} ({k})" for c, k in sorted(traffic.attackers.items())) or "none"))
