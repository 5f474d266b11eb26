# Written by hand: the data step encrypts existing secret targets (issue 27, low finding), then the field changes.
from django.db import migrations

import monitor.models.alerts
from monitor.platform.crypto import SEALED_PREFIX, open_text, seal_text

# The kinds whose target is a secret when this migration was written (NotificationChannel.SECRET_TARGETS).
SECRET_KINDS = ("slack", "webhook", "pagerduty", "teams")


def seal_secret_targets(apps, schema_editor):
    """Runs while the field is still a plain TextField: the values read and written are the stored ones."""
    Channel = apps.get_model("monitor", "NotificationChannel")
    for pk, target in Channel.objects.filter(kind__in=SECRET_KINDS).values_list("pk", "target"):
        if target and not target.startswith(SEALED_PREFIX):
            Channel.objects.filter(pk=pk).update(target=seal_text(target))


def open_secret_targets(apps, schema_editor):
    """Back to the clear (runs after the field is a plain TextField again)."""
    Channel = apps.get_model("monitor", "NotificationChannel")
    for pk, target in Channel.objects.filter(target__startswith=SEALED_PREFIX).values_list("pk", "target"):
        Channel.objects.filter(pk=pk).update(target=open_text(target))


class Migration(migrations.Migration):

    dependencies = [
        ('monitor', '0021_sso_identity_token_expiry'),
    ]

    operations = [
        migrations.RunPython(seal_secret_targets, open_secret_targets),
        migrations.AlterField(
            model_name='notificationchannel',
            name='target',
            field=monitor.models.alerts.ChannelTargetField(help_text="email: comma-separated addresses; Slack, Teams, webhook: the URL; PagerDuty: the integration's routing key"),
        ),
    ]
