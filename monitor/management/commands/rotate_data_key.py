"""Re-encrypt every encrypted column with the newest data key (DATA_ENCRYPTION_KEYS, newest first), so that the
older keys can be removed. Safe to run again, or alongside the app: a row already under the newest key is left."""
from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from monitor.platform.crypto import ENCRYPTED_COLUMNS, rotate_column
from monitor.trail.models import TrailEntry


class Command(BaseCommand):
    help = ("Re-encrypt reference data, cached reference outputs, exposure rankings, hardened artifacts, the "
            "detectors' fingerprint keys and the channels' secrets with the newest of DATA_ENCRYPTION_KEYS. Put the "
            "new key first (DATA_ENCRYPTION_KEYS=NEW,OLD), restart every process, run this, then drop OLD.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch-size", type=int, default=50,
                            help="rows re-encrypted per transaction (reference data rows can be megabytes each)")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")
        counts = {}
        for column in ENCRYPTED_COLUMNS:
            counts[column] = rotate_column(column, batch_size=options["batch_size"]).as_dict()
            self.stdout.write(f"{column}: {counts[column]['rotated']} re-encrypted, {counts[column]['current']} "
                              f"already current, {counts[column]['unreadable']} unreadable")
        # Counts only: which keys were used is nobody's business but the environment's.
        TrailEntry.record(action="data_key.rotated", object_type="data_key",
                          after={"keys": len(settings.DATA_ENCRYPTION_KEYS), "columns": counts})
        unreadable = {column: c["unreadable"] for column, c in counts.items() if c["unreadable"]}
        if unreadable:
            raise CommandError(
                f"{sum(unreadable.values())} value(s) could not be decrypted with any of DATA_ENCRYPTION_KEYS and were "
                f"left as they were ({', '.join(f'{column}: {n}' for column, n in unreadable.items())}): add the "
                "key they were written with to the list and run again")
        total = sum(c["rotated"] for c in counts.values())
        self.stdout.write(self.style.SUCCESS(f"data key rotated: {total} value(s) re-encrypted with the newest key"))
