"""PostgreSQL refuses UPDATE and DELETE on the audit log, whoever sends them (raw SQL included).

The one update allowed is the actor link going to NULL when a user is deleted (on_delete=SET_NULL): the hash
covers the actor's name, not the link. Someone who owns the table can still disable the trigger; the hash chain
and its head row then name the damage (`verify_audit_log`). SQLite (the local default) keeps the model-level guard.
"""
from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.actor_id IS NULL
       AND to_jsonb(NEW) - 'actor_id' = to_jsonb(OLD) - 'actor_id' THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'audit log entries are append-only (% of entry #% refused)', TG_OP, OLD.seq
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audits_auditlogentry
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
"""
DROP = """
DROP TRIGGER IF EXISTS audit_log_append_only ON audits_auditlogentry;
DROP FUNCTION IF EXISTS audit_log_append_only();
"""


def create(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)  # no placeholders: RAISE uses % itself


def drop(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [("audits", "0001_initial")]
    operations = [migrations.RunPython(create, drop)]
