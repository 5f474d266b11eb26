"""Print a new API token: a model's ingestion token, a person's personal token, or a metrics-only one."""
from __future__ import annotations

import re
from argparse import ArgumentTypeError

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from monitor.access.roles import ROLES, role_groups
from monitor.models import ApiToken, RegisteredModel

MAX_DAYS = 36_500


def whole_days(raw: str) -> int:
    """--expires-days: a whole number of days, 0 or more (argparse's int would take "+7" and " 7", and -1)."""
    if not re.fullmatch(r"[0-9]+", raw):
        raise ArgumentTypeError(f"{raw!r} is not a whole number of days (0: never expires)")
    if int(raw) > MAX_DAYS:
        raise ArgumentTypeError(f"{raw} days is past any date a token could be used; at most {MAX_DAYS:,} (0: never)")
    return int(raw)


class Command(BaseCommand):
    help = "Print a new API token (shown once; only its hash is stored)."

    def add_arguments(self, parser: CommandParser) -> None:
        owner = parser.add_mutually_exclusive_group(required=True)
        owner.add_argument("--model", help="an ingestion token for this model's slug")
        owner.add_argument("--user", help="a personal token for this user (created if missing)")
        owner.add_argument("--metrics", action="store_true", help="a token that may only scrape GET /metrics")
        parser.add_argument("--role", choices=ROLES, help="with --user: put the user in this role")
        parser.add_argument("--expires-days", type=whole_days, metavar="N",
                            help="refused after N days (0: never); a personal token's default is the "
                                 "API_TOKEN_MAX_AGE_DAYS setting, other tokens never expire unless given this")

    @transaction.atomic
    def handle(self, *args, **options) -> None:
        days = options["expires_days"]
        if options["metrics"]:
            if options["role"]:
                raise CommandError("--role applies to --user tokens only")
            token, clear = ApiToken.issue(kind=ApiToken.METRICS, expires_days=days)
        elif options["model"]:
            if options["role"]:
                raise CommandError("--role applies to --user tokens only")
            model = RegisteredModel.objects.filter(slug=options["model"]).first()
            if model is None:
                raise CommandError(f"no model with slug {options['model']!r}")
            token, clear = ApiToken.issue(kind=ApiToken.INGEST, model=model, expires_days=days)
        else:
            if not options["role"]:
                raise CommandError("--user needs --role (one of: " + ", ".join(ROLES) + ")")
            user, created = get_user_model().objects.get_or_create(username=options["user"])
            if created:
                user.set_unusable_password()
                user.save()
            user.groups.add(*role_groups([options["role"]]))
            token, clear = ApiToken.issue(kind=ApiToken.USER, user=user, expires_days=days)
        self.stdout.write(clear)  # stdout holds the token alone, for scripts; the rest goes to stderr
        self.stderr.write(f"{token.prefix}… expires {token.expires_at:%Y-%m-%d %H:%M} UTC" if token.expires_at
                          else f"{token.prefix}… does not expire")
