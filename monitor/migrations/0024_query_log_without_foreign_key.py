"""The query log loses its foreign key to the model on PostgreSQL. PostgreSQL checked it once per row, at commit
(a lookup and a row lock on the model for each of a batch's thousands of rows): a COPY into a table with that key
ran at 110,000 rows/s, without it at 168,000 (bench/ingest.py's rows, one connection). store_queries now does what
the check did once per batch (monitor.ingestion.store.hold_model: the model's row FOR KEY SHARE until the batch
commits, a deleted model refused). Dropped on the partitioned parent, the key goes from every partition too.

SQLite keeps the key its table was made with (a single writer; no partitions): only Django's state changes there."""

from django.db import migrations, models

FK = "monitor_querylog_model_fk"


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"ALTER TABLE monitor_querylog DROP CONSTRAINT IF EXISTS {FK}")


def restore(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"ALTER TABLE monitor_querylog ADD CONSTRAINT {FK} FOREIGN KEY (model_id) "
                              "REFERENCES monitor_registeredmodel(id) DEFERRABLE INITIALLY DEFERRED")


class Migration(migrations.Migration):

    dependencies = [
        ("monitor", "0023_client_throttle"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(drop, restore)],
            state_operations=[
                migrations.AlterField(
                    model_name="querylog",
                    name="model",
                    field=models.ForeignKey(db_constraint=False, db_index=False, on_delete=models.deletion.CASCADE,
                                            related_name="queries", to="monitor.registeredmodel"),
                ),
            ],
        ),
    ]
