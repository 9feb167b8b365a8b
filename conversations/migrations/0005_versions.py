"""Versions: messages become a tree (reply_to -> parent, user messages get the answer they
follow as parent), conversations remember the path shown, and gain a system prompt."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def link_questions(apps, schema_editor):
    """Before versions, a conversation was a line: each user message follows the answer
    just before it (the turn's latest attempt, which is what was sent upstream)."""
    Message = apps.get_model("conversations", "Message")
    last_answer: dict[int, int] = {}
    rows = Message.objects.order_by("conversation_id", "created_at", "id").values_list(
        "id", "conversation_id", "role"
    )
    for pk, conversation_id, role in rows.iterator(chunk_size=2000):
        if role == "assistant":
            last_answer[conversation_id] = pk
        elif role == "user" and conversation_id in last_answer:
            Message.objects.filter(pk=pk).update(parent_id=last_answer[conversation_id])


class Migration(migrations.Migration):
    dependencies = [
        ("conversations", "0004_pin_archive"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RenameField(model_name="message", old_name="reply_to", new_name="parent"),
        migrations.AlterField(
            model_name="message",
            name="parent",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="children",
                to="conversations.message",
            ),
        ),
        migrations.RunPython(link_questions, migrations.RunPython.noop),
        migrations.AddField(
            model_name="conversation",
            name="system_prompt",
            field=models.TextField(blank=True),
        ),
        migrations.AddField(
            model_name="conversation",
            name="leaf",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to="conversations.message",
            ),
        ),
        migrations.CreateModel(
            name="UserSettings",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("default_system_prompt", models.TextField(blank=True)),
                ("default_model", models.CharField(blank=True, max_length=200)),
                (
                    "user",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="chat_settings",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
        ),
    ]
