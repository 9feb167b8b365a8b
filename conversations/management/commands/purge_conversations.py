"""Delete conversations with no activity for N days (retention), what abandoned imports
left behind, and attached files never sent (CHATSITE_ATTACHMENT_PENDING_HOURS). For cron,
e.g. daily:

15 3 * * *  cd /srv/chatsite && .venv/bin/python manage.py purge_conversations
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from conversations import attachment_services, services
from conversations.portability import writing


class Command(BaseCommand):
    help = "Delete conversations whose last activity is older than the retention period."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--days",
            type=int,
            default=None,
            help="Retention in days (default: CHATSITE_RETENTION_DAYS; 0 keeps everything).",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Count what would go, delete nothing."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not options["dry_run"]:
            # Whatever the retention: imports whose process died mid-way leave hidden rows.
            abandoned = writing.import_job_cleanup()
            if abandoned:
                self.stdout.write(f"{abandoned} abandoned import(s) cleaned up.")
            # Whatever the retention too: files uploaded but never sent.
            unsent = attachment_services.attachments_pending_purge()
            if unsent:
                self.stdout.write(f"{unsent} attached file(s) never sent deleted.")
        days = options["days"] if options["days"] is not None else settings.CHATSITE_RETENTION_DAYS
        if days < 0:
            raise CommandError("--days must be 0 (keep everything) or more.")
        if days == 0:
            self.stdout.write("Retention is off (0 days): nothing deleted.")
            return
        count = services.conversation_purge_older_than(days=days, dry_run=options["dry_run"])
        verb = "would be deleted" if options["dry_run"] else "deleted"
        self.stdout.write(f"{count} conversation(s) older than {days} days {verb}.")
