"""The security trail now belongs to monitor.trail (see monitor 0006): the audits app forgets its state only;
the tables and their rows stay."""
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("audits", "0002_audit_log_append_only"), ("monitor", "0006_trail_from_audits")]
    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[
            migrations.DeleteModel(name="AuditLogEntry"),
            migrations.DeleteModel(name="AuditChainHead"),
        ], database_operations=[]),
    ]
