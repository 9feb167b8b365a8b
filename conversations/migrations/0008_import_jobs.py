"""Import jobs: a file is written in short transactions while its conversations stay
hidden (Conversation.importing) until the job completes. On SQLite adding the columns
remakes the conversation table, so the search triggers are installed again afterwards
(see 0006_search)."""

import importlib
import uuid

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

search = importlib.import_module("conversations.migrations.0006_search")


class Migration(migrations.Migration):
    dependencies = [
        ("conversations", "0007_message_hidden"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="conversation",
            name="importing",
            field=models.BooleanField(default=False),
        ),
        migrations.CreateModel(
            name="ImportJob",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("public_id", models.UUIDField(default=uuid.uuid4, editable=False, unique=True)),
                ("name", models.CharField(blank=True, max_length=200)),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("running", "Running"),
                            ("complete", "Complete"),
                            ("failed", "Failed"),
                        ],
                        default="running",
                        max_length=16,
                    ),
                ),
                ("conversations_total", models.PositiveIntegerField(default=0)),
                ("messages_total", models.PositiveIntegerField(default=0)),
                ("conversations_done", models.PositiveIntegerField(default=0)),
                ("messages_done", models.PositiveIntegerField(default=0)),
                ("error", models.TextField(blank=True)),
                ("started_at", models.DateTimeField(auto_now_add=True)),
                ("heartbeat_at", models.DateTimeField(auto_now_add=True)),
                ("finished_at", models.DateTimeField(blank=True, null=True)),
                (
                    "owner",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="import_jobs",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "ordering": ["-started_at", "-id"],
            },
        ),
        migrations.AddField(
            model_name="conversation",
            name="import_job",
            field=models.ForeignKey(
                blank=True,
                editable=False,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="conversations",
                to="conversations.importjob",
            ),
        ),
        migrations.AddIndex(
            model_name="importjob",
            index=models.Index(
                condition=models.Q(("status", "running")),
                fields=["heartbeat_at"],
                name="importjob_running_heartbeat",
            ),
        ),
        migrations.AddConstraint(
            model_name="importjob",
            constraint=models.CheckConstraint(
                condition=models.Q(("status__in", ["running", "complete", "failed"])),
                name="importjob_status_valid",
            ),
        ),
        migrations.AddConstraint(
            model_name="importjob",
            constraint=models.UniqueConstraint(
                condition=models.Q(("status", "running")),
                fields=("owner",),
                name="importjob_one_running_per_owner",
            ),
        ),
        migrations.RunPython(search.reinstall_sqlite_triggers, migrations.RunPython.noop),
    ]
