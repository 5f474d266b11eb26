from django.core.management.base import BaseCommand

from monitor.alerts.lifecycle import housekeeping
from monitor.alerts.outbox import deliver_due


class Command(BaseCommand):
    help = "Deliver pending notifications now (what the worker does every 15 seconds)."

    def handle(self, *args, **options) -> None:
        changes = housekeeping()
        outcomes = deliver_due()
        self.stdout.write(f"housekeeping: {changes}; deliveries: {outcomes or 'nothing due'}")
