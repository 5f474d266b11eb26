"""Check an evidence bundle offline: one line per check, and a non-zero exit naming what failed."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audits.evidence.verify import verify_bundle


class Command(BaseCommand):
    help = ("Verify an evidence bundle: the Ed25519 signature of MANIFEST.json, every file's SHA-256 and size, "
            "missing and extra files, the audit-log chain segment and the controls annex. Pass --public-key with the organisation's "
            "published key to prove where the bundle came from, not only that it is intact.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("bundle", help="the evidence bundle (.zip)")
        parser.add_argument("--public-key", metavar="FILE", help="the trusted Ed25519 public key (PEM)")

    def handle(self, *args: Any, **options: Any) -> None:
        data = _read(options["bundle"], what="bundle")
        key = _read(options["public_key"], what="public key") if options["public_key"] else None
        report = verify_bundle(data, public_key_pem=key)
        for check in report.checks:
            line = check.line()
            self.stdout.write(self.style.SUCCESS(line) if check.ok else self.style.ERROR(line))
        if not report.ok:
            failed = "; ".join(f"{check.item}: {check.message}" for check in report.failures)
            raise CommandError(f"evidence bundle FAILED ({len(report.failures)} check(s)): {failed}")
        origin = "signed by the given key" if key is not None else "signed by its embedded key (no trusted key given)"
        self.stdout.write(self.style.SUCCESS(f"evidence bundle OK: {len(report.checks)} checks passed, {origin}"))


def _read(path: str, *, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise CommandError(f"cannot read the {what} {path}: {exc.strerror or exc}") from exc
