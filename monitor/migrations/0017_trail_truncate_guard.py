"""The trail's end guarded on PostgreSQL, and its signed heads kept (monitor.trail.signing).

audits 0002 refuses UPDATE and DELETE of trail entries, but TRUNCATE fires no row trigger and the head row had
none. Here: TRUNCATE of the trail, its head and the signed heads is refused; the head refuses DELETE and any
UPDATE that does not move it forward; signed heads are append-only. A superuser may TRUNCATE (it can switch any
trigger off anyway, and Django's flush of a test database runs as one): run the app as a role that owns nothing
(README, "Database roles"). SQLite (the local default) gets no triggers: the model-level guards and
verify_audit_log are what it has.
"""
from django.db import migrations, models

CREATE = """
CREATE OR REPLACE FUNCTION trail_refuse_truncate() RETURNS trigger AS $$
BEGIN
    IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'the security trail cannot be truncated (TRUNCATE % refused)', TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audits_auditlogentry
    FOR EACH STATEMENT EXECUTE FUNCTION trail_refuse_truncate();
CREATE TRIGGER trail_head_no_truncate BEFORE TRUNCATE ON audits_auditchainhead
    FOR EACH STATEMENT EXECUTE FUNCTION trail_refuse_truncate();
CREATE TRIGGER signed_trail_head_no_truncate BEFORE TRUNCATE ON monitor_signedtrailhead
    FOR EACH STATEMENT EXECUTE FUNCTION trail_refuse_truncate();

CREATE OR REPLACE FUNCTION trail_head_forward_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.id = OLD.id
       AND (NEW.seq > OLD.seq OR (NEW.seq = OLD.seq AND NEW.hash = OLD.hash)) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'the security trail head only moves forward (% of the head at #% refused)', TG_OP, OLD.seq
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER trail_head_forward_only BEFORE UPDATE OR DELETE ON audits_auditchainhead
    FOR EACH ROW EXECUTE FUNCTION trail_head_forward_only();

CREATE OR REPLACE FUNCTION signed_trail_head_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'signed trail heads are append-only (% of the head signed at #% refused)', TG_OP, OLD.seq
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER signed_trail_head_append_only BEFORE UPDATE OR DELETE ON monitor_signedtrailhead
    FOR EACH ROW EXECUTE FUNCTION signed_trail_head_append_only();
"""
DROP = """
DROP TRIGGER IF EXISTS signed_trail_head_append_only ON monitor_signedtrailhead;
DROP FUNCTION IF EXISTS signed_trail_head_append_only();
DROP TRIGGER IF EXISTS trail_head_forward_only ON audits_auditchainhead;
DROP FUNCTION IF EXISTS trail_head_forward_only();
DROP TRIGGER IF EXISTS signed_trail_head_no_truncate ON monitor_signedtrailhead;
DROP TRIGGER IF EXISTS trail_head_no_truncate ON audits_auditchainhead;
DROP TRIGGER IF EXISTS audit_log_no_truncate ON audits_auditlogentry;
DROP FUNCTION IF EXISTS trail_refuse_truncate();
"""


def create(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)  # no placeholders: RAISE uses % itself


def drop(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):

    dependencies = [
        ('monitor', '0016_one_client_id_length'),
    ]

    operations = [
        migrations.CreateModel(
            name='SignedTrailHead',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('seq', models.PositiveBigIntegerField(unique=True)),
                ('hash', models.CharField(max_length=64)),
                ('signed_at', models.DateTimeField()),
                ('signature', models.CharField(max_length=128)),
                ('key_sha256', models.CharField(max_length=64)),
            ],
            options={
                'ordering': ['seq'],
            },
        ),
        migrations.RunPython(create, drop),
    ]
