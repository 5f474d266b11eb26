"""Failed logins folded per (address, minute) (monitor.trail.hooks): the window rows that count them between the
trail entries."""
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("monitor", "0017_trail_truncate_guard"),
    ]

    operations = [
        migrations.CreateModel(
            name="LoginFailureWindow",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("address", models.CharField(blank=True, max_length=64)),
                ("minute", models.DateTimeField()),
                ("failures", models.PositiveIntegerField(default=0)),
                ("locked_out", models.PositiveIntegerField(default=0)),
                ("usernames", models.JSONField(default=list)),
                ("more_usernames", models.BooleanField(default=False)),
            ],
            options={
                "constraints": [models.UniqueConstraint(fields=("address", "minute"), name="login_failure_window_unique")],
            },
        ),
    ]
