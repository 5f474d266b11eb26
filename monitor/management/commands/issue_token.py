from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from monitor.access.roles import ROLES, role_groups
from monitor.models import ApiToken, RegisteredModel


class Command(BaseCommand):
    help = "Print a new API token (shown once; only its hash is stored)."

    def add_arguments(self, parser: CommandParser) -> None:
        owner = parser.add_mutually_exclusive_group(required=True)
        owner.add_argument("--model", help="an ingestion token for this model's slug")
        owner.add_argument("--user", help="a personal token for this user (created if missing)")
        owner.add_argument("--metrics", action="store_true", help="a token that may only scrape GET /metrics")
        parser.add_argument("--role", choices=ROLES, help="with --user: put the user in this role")

    @transaction.atomic
    def handle(self, *args, **options) -> None:
        if options["metrics"]:
            if options["role"]:
                raise CommandError("--role applies to --user tokens only")
            _, clear = ApiToken.issue(kind=ApiToken.METRICS)
        elif options["model"]:
            if options["role"]:
                raise CommandError("--role applies to --user tokens only")
            model = RegisteredModel.objects.filter(slug=options["model"]).first()
            if model is None:
                raise CommandError(f"no model with slug {options['model']!r}")
            _, clear = ApiToken.issue(kind=ApiToken.INGEST, model=model)
        else:
            if not options["role"]:
                raise CommandError("--user needs --role (one of: " + ", ".join(ROLES) + ")")
            user, created = get_user_model().objects.get_or_create(username=options["user"])
            if created:
                user.set_unusable_password()
                user.save()
            user.groups.add(*role_groups([options["role"]]))
            _, clear = ApiToken.issue(kind=ApiToken.USER, user=user)
        self.stdout.write(clear)
