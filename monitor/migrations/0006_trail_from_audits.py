"""The security trail moves from the audits app to monitor.trail (state only): its tables keep their names and
rows, and the append-only trigger of audits 0002 stays on them."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('monitor', '0005_token_rate_limit'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        ('audits', '0002_audit_log_append_only'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[
                migrations.CreateModel(
                    name='TrailHead',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('seq', models.PositiveBigIntegerField(default=0)),
                        ('hash', models.CharField(default='0000000000000000000000000000000000000000000000000000000000000000', max_length=64)),
                    ],
                    options={
                        'db_table': 'audits_auditchainhead',
                    },
                ),
                migrations.CreateModel(
                    name='TrailEntry',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('seq', models.PositiveBigIntegerField(unique=True)),
                        ('at', models.DateTimeField(db_index=True)),
                        ('actor_name', models.CharField(max_length=150)),
                        ('ip', models.GenericIPAddressField(blank=True, null=True)),
                        ('action', models.CharField(db_index=True, max_length=64)),
                        ('object_type', models.CharField(blank=True, max_length=64)),
                        ('object_id', models.CharField(blank=True, max_length=64)),
                        ('before', models.JSONField(blank=True, null=True)),
                        ('after', models.JSONField(blank=True, null=True)),
                        ('prev_hash', models.CharField(max_length=64)),
                        ('hash', models.CharField(max_length=64, unique=True)),
                        ('actor', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                    ],
                    options={
                        'verbose_name': 'security trail entry',
                        'verbose_name_plural': 'security trail entries',
                        'db_table': 'audits_auditlogentry',
                        'ordering': ['seq'],
                    },
                ),
        ], database_operations=[]),
    ]
