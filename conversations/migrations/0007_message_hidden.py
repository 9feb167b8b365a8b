"""Messages hidden by moderation. On SQLite adding these columns remakes the message
table, so the search triggers are installed again afterwards (see 0006_search)."""

import importlib

from django.db import migrations, models

search = importlib.import_module("conversations.migrations.0006_search")


class Migration(migrations.Migration):
    dependencies = [("conversations", "0006_search")]

    operations = [
        migrations.AddField(
            model_name="message",
            name="hidden",
            field=models.BooleanField(default=False),
        ),
        migrations.AddField(
            model_name="message",
            name="hidden_reason",
            field=models.CharField(blank=True, max_length=200),
        ),
        migrations.RunPython(search.reinstall_sqlite_triggers, migrations.RunPython.noop),
    ]
