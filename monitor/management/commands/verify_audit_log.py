from django.core.management.base import BaseCommand, CommandError

from monitor.trail.models import verify_chain


class Command(BaseCommand):
    help = "Walk the hash-chained security trail (audit log); exit non-zero naming the first broken entry."

    def handle(self, *args, **options) -> None:
        ok, message = verify_chain()
        if not ok:
            raise CommandError(f"audit log BROKEN: {message}")
        self.stdout.write(self.style.SUCCESS(f"audit log OK: {message}"))
