"""The detectors' carried state moves from one JSON document per model to one row per (model, detector, client),
and a scan gets parts (client-hash shards) with their own watermark and lease. Existing state is split into
rows (and joined back when the migration is reversed); each part starts at the model's watermark."""
import json
import time

import django.db.models.deletion
from django.db import migrations, models


def _seen_at(entry, fallback):
    if isinstance(entry, dict):
        if isinstance(entry.get("last"), (int, float)):
            return float(entry["last"])
        times = entry.get("t")
        if isinstance(times, list) and times:
            return float(times[-1])
    return fallback


def state_to_rows(apps, schema_editor):
    DetectorState = apps.get_model("monitor", "DetectorState")
    ScannerState = apps.get_model("monitor", "ScannerState")
    now = time.time()
    for holder in DetectorState.objects.all().iterator():
        rows = {}
        for detector, state in (holder.state or {}).items():
            window = state.get("window") if detector == "account_linking" else None
            for section, entries in state.items():
                if not isinstance(entries, dict):
                    continue  # the account-linking window: now kept in each client's entry
                for client, entry in entries.items():
                    if window is not None and isinstance(entry, dict):
                        entry = {**entry, "window": window}
                    row = rows.setdefault((detector, client), {"data": {}, "seen_at": None})
                    row["data"][section] = entry
                    seen = _seen_at(entry, None)
                    if seen is not None:
                        row["seen_at"] = max(row["seen_at"] or seen, seen)
        ScannerState.objects.bulk_create(
            [ScannerState(model_id=holder.model_id, detector=detector, client_id=client, data=json.dumps(row["data"]).encode(),
                          seen_at=row["seen_at"] if row["seen_at"] is not None else now)
             for (detector, client), row in rows.items()], batch_size=2000)


def no_compression(apps, schema_editor):
    """PostgreSQL: the sketches are packed bytes that do not compress; trying costs a fifth of each upsert."""
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE monitor_scannerstate ALTER COLUMN data SET STORAGE EXTERNAL")


def rows_to_state(apps, schema_editor):
    DetectorState = apps.get_model("monitor", "DetectorState")
    ScannerState = apps.get_model("monitor", "ScannerState")
    for holder in DetectorState.objects.all().iterator():
        state = {}
        for row in ScannerState.objects.filter(model_id=holder.model_id).iterator():
            sections = state.setdefault(row.detector, {})
            for section, entry in json.loads(bytes(row.data)).items():
                sections.setdefault(section, {})[row.client_id] = entry
        linking = state.get("account_linking")
        if linking:
            windows = [e.get("window") for e in linking.get("clients", {}).values() if isinstance(e, dict)]
            window = max((w for w in windows if w is not None), default=None)
            linking["clients"] = {c: {k: v for k, v in e.items() if k != "window"}
                                  for c, e in linking.get("clients", {}).items() if e.get("window") == window}
            linking["window"] = window
        holder.state = state
        holder.save(update_fields=["state"])


class Migration(migrations.Migration):

    dependencies = [
        ('monitor', '0007_partitioned_query_log'),
    ]

    operations = [
        migrations.CreateModel(
            name='ScannerState',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('detector', models.CharField(max_length=64)),
                ('client_id', models.CharField(max_length=200)),
                ('data', models.BinaryField()),
                ('seen_at', models.FloatField()),
                ('model', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='scanner_states', to='monitor.registeredmodel')),
            ],
            options={
                'indexes': [models.Index(fields=['model', 'detector', 'seen_at'], name='scannerstate_expiry')],
                'constraints': [models.UniqueConstraint(fields=('model', 'detector', 'client_id'), name='scannerstate_one_per_client')],
            },
        ),
        migrations.CreateModel(
            name='ScanShard',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('count', models.PositiveSmallIntegerField()),
                ('index', models.PositiveSmallIntegerField()),
                ('watermark_id', models.BigIntegerField(default=0, help_text='highest query id this part has scanned')),
                ('lease_until', models.DateTimeField(blank=True, help_text='a worker holds this part until then', null=True)),
                ('held_by', models.CharField(blank=True, help_text='host:pid of the worker that claimed it last', max_length=200)),
                ('last_scan_at', models.DateTimeField(blank=True, null=True)),
                ('model', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='scan_shards', to='monitor.registeredmodel')),
            ],
            options={
                'constraints': [models.UniqueConstraint(fields=('model', 'count', 'index'), name='scanshard_once')],
            },
        ),
        migrations.RunPython(no_compression, migrations.RunPython.noop),
        migrations.RunPython(state_to_rows, rows_to_state),
        migrations.RemoveField(model_name='detectorstate', name='state'),
        migrations.RemoveField(model_name='detectorstate', name='lease_until'),
    ]
