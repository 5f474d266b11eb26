from django.core.management.base import BaseCommand, CommandError

from monitor.trail.models import verify_chain
from monitor.trail.signing import check_signed_heads


class Command(BaseCommand):
    help = ("Walk the hash-chained security trail (audit log) to its head, and check every signed head (signature, "
            "and that the trail still holds it); exit non-zero naming the first broken entry, the missing end or "
            "the signed head the trail no longer matches.")

    def handle(self, *args, **options) -> None:
        chain_ok, chain_message = verify_chain()
        heads_ok, heads_message = check_signed_heads()
        failures = [message for ok, message in ((chain_ok, chain_message), (heads_ok, heads_message)) if not ok]
        if failures:
            raise CommandError("audit log BROKEN: " + "; ".join(line for f in failures for line in f.split("\n")))
        self.stdout.write(self.style.SUCCESS(f"audit log OK: {chain_message}; {heads_message}"))
