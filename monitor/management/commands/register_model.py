from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from monitor.registry.registration import RegistrationError, Upload, register_model


def read_upload(path: str | None, option: str, setting: str = "DATASET_MAX_BYTES") -> Upload | None:
    """The file's bytes, once its size is known to be within `setting` (an oversized file is never read)."""
    if path is None:
        return None
    file = Path(path)
    if not file.is_file():
        raise CommandError(f"{option}: {path} is not a readable file")
    size, limit = file.stat().st_size, getattr(settings, setting)
    if size > limit:
        raise CommandError(f"nothing was registered.\n{option}: the file is {size:,} bytes; "
                           f"the limit is {limit:,} bytes ({setting})")
    return Upload(data=file.read_bytes(), filename=file.name)


class Command(BaseCommand):
    help = "Register a model with its artifact (or endpoint) and reference data; nothing is stored unless all of it is valid."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--slug", required=True)
        parser.add_argument("--name", required=True)
        parser.add_argument("--team", default="")
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--artifact", help="a .skops, .onnx, XGBoost .json/.ubj or LightGBM .txt file (pickles are refused)")
        source.add_argument("--endpoint", help="a remote model: POST {\"instances\": [[...]]} -> {\"probabilities\": [[...]]}")
        parser.add_argument("--members", required=True, help="CSV of training records with labels")
        parser.add_argument("--nonmembers", required=True, help="CSV of held-out records with labels")
        parser.add_argument("--population", help="CSV of further records for reference models")
        parser.add_argument("--label-column", required=True)
        parser.add_argument("--id-column", help="a record id column (default: the data row number)")
        parser.add_argument("--output-policy", default="full", help="full | round:K | label | noise:SCALE")

    def handle(self, *args, **options) -> None:
        try:
            model = register_model(
                slug=options["slug"], name=options["name"], team=options["team"],
                artifact=read_upload(options["artifact"], "--artifact", "ARTIFACT_MAX_BYTES"), endpoint_url=options["endpoint"],
                members=read_upload(options["members"], "--members"),
                nonmembers=read_upload(options["nonmembers"], "--nonmembers"),
                population=read_upload(options["population"], "--population"),
                label_column=options["label_column"], id_column=options["id_column"],
                output_policy=options["output_policy"],
            )
        except RegistrationError as exc:
            raise CommandError(f"nothing was registered.\n--{exc.field.replace('_', '-')}: {exc.message}" + "".join(
                "\n  " + ", ".join(f"{k} {v}" for k, v in d.items() if k != "message") + f": {d['message']}"
                for d in exc.details
            )) from exc
        datasets = ", ".join(f"{d.kind} {d.n_rows} rows" for d in model.datasets.defer("ciphertext"))
        self.stdout.write(self.style.SUCCESS(
            f"registered {model.slug} ({model.source}, {model.n_features} features, classes {model.class_labels}; {datasets})"
        ))
