"""Conversations and their messages.

Invariants that must hold whatever code writes the rows live here as database
constraints, not in save(): a status from the known set, at most one answer streaming
per conversation, and only assistant messages carrying a non-final status.
"""

from __future__ import annotations

import uuid
from typing import cast

from django.conf import settings
from django.core.files.storage import Storage, storages
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.functional import LazyObject


class Conversation(models.Model):
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations"
    )

    class TitleSource(models.TextChoices):
        NONE = "", "None"
        WORDS = "words", "First words of the first message"
        MODEL = "model", "Written by the model"
        USER = "user", "Set by the user"

    title = models.CharField(max_length=200, blank=True)
    # Who wrote the title: a model-written title replaces the first words, never a user's.
    title_source = models.CharField(
        max_length=8, choices=TitleSource.choices, default=TitleSource.NONE, blank=True
    )
    model = models.CharField(max_length=200)
    # Sent first with every request of this conversation (the user's default when made).
    system_prompt = models.TextField(blank=True)
    # The last message of the path of versions the reader sees; what is sent upstream is
    # always this path. Null means "the newest message".
    leaf = models.ForeignKey(
        "Message", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    pinned = models.BooleanField(default=False)
    archived = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    # Last activity (a message sent or an answer finished): the list is ordered by it.
    updated_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # Written by an import that has not finished: the owner sees none of it (every
    # selector leaves it out) until the import completes and clears it in one statement;
    # a failed or abandoned import's rows are deleted.
    importing = models.BooleanField(default=False)
    import_job = models.ForeignKey(
        "ImportJob",
        null=True,
        blank=True,
        editable=False,
        on_delete=models.SET_NULL,
        related_name="conversations",
    )

    class Meta:
        ordering = ["-updated_at", "-id"]
        indexes = [models.Index(fields=["owner", "-updated_at"], name="conv_owner_recent")]

    def __str__(self) -> str:
        return self.title or f"Conversation {self.public_id}"

    @property
    def display_title(self) -> str:
        return self.title or "New conversation"


class Message(models.Model):
    class Role(models.TextChoices):
        USER = "user", "User"
        ASSISTANT = "assistant", "Assistant"
        SYSTEM = "system", "System"

    class Status(models.TextChoices):
        STREAMING = "streaming", "Streaming"
        COMPLETE = "complete", "Complete"
        STOPPED = "stopped", "Stopped"
        ERROR = "error", "Error"
        INTERRUPTED = "interrupted", "Interrupted"

    FINAL_STATUSES = (Status.COMPLETE, Status.STOPPED, Status.ERROR, Status.INTERRUPTED)

    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages"
    )
    role = models.CharField(max_length=16, choices=Role.choices)
    content = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.COMPLETE)
    finish_reason = models.CharField(max_length=32, blank=True)
    # A reason a person understands; raw upstream bodies go to the log, never here.
    error = models.TextField(blank=True)
    upstream_request_id = models.CharField(max_length=200, blank=True)
    model = models.CharField(max_length=200, blank=True)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    total_tokens = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    first_token_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    # Messages form a tree: an answer's parent is the user message it replies to, a user
    # message's parent is the answer it follows (none for the first). Siblings are the
    # versions of a turn: regenerated answers, edited questions.
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="children"
    )
    # Set by the browser for each submitted message: a double submit or a resend after a
    # reconnect carries the same key and never creates a second message.
    client_key = models.CharField(max_length=64, blank=True)
    # Channel-layer address of the generation producing this answer, so that a Stop
    # from any tab in any process can reach it.
    generation_channel = models.CharField(max_length=255, blank=True)
    # Hidden by moderation (a blocked message, a stopped or hidden answer): the text is kept
    # for moderators, the owner sees a notice, and it is never sent upstream again.
    hidden = models.BooleanField(default=False)
    hidden_reason = models.CharField(max_length=200, blank=True)
    # Refreshed by the process running the generation; a streaming answer whose heartbeat
    # is stale belongs to a dead process and is marked interrupted by any live one.
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(role__in=["user", "assistant", "system"]), name="message_role_valid"
            ),
            models.CheckConstraint(
                condition=Q(
                    status__in=["streaming", "complete", "stopped", "error", "interrupted"]
                ),
                name="message_status_valid",
            ),
            models.CheckConstraint(
                condition=Q(role="assistant") | Q(status="complete"),
                name="message_only_answers_have_a_life",
            ),
            models.UniqueConstraint(
                fields=["conversation"],
                condition=Q(status="streaming"),
                name="message_one_streaming_answer_per_conversation",
            ),
            models.UniqueConstraint(
                fields=["conversation", "client_key"],
                condition=~Q(client_key=""),
                name="message_client_key_once_per_conversation",
            ),
        ]
        indexes = [
            models.Index(fields=["conversation", "created_at"], name="msg_conv_created"),
            models.Index(
                fields=["heartbeat_at"],
                condition=Q(status="streaming"),
                name="msg_streaming_heartbeat",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.role} #{self.pk} ({self.status})"

    @property
    def is_streaming(self) -> bool:
        return self.status == self.Status.STREAMING


FEEDBACK_COMMENT_CHARS = 2000


class AnswerFeedback(models.Model):
    """The owner's verdict on an answer: helpful or not, with an optional comment. Shown
    to the owner on the answer, counted per model for the operator."""

    class Value(models.IntegerChoices):
        UP = 1, "Helpful"
        DOWN = -1, "Not helpful"

    message = models.OneToOneField(Message, on_delete=models.CASCADE, related_name="feedback")
    value = models.SmallIntegerField(choices=Value.choices)
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(value__in=[1, -1]), name="feedback_up_or_down"),
        ]

    def __str__(self) -> str:
        return f"{self.get_value_display()} on #{self.message_id}"


class ChunkLog(models.Model):
    """An answer's upstream body as it arrived, read by read, with the seconds since its
    first request (CHATSITE_CHUNK_LOG): for post-mortems, beside the request id. Bounded
    (CHATSITE_CHUNK_LOG_MAX_BYTES); shown to superusers in admin, each viewing recorded;
    deleted with its message (retention, account deletion)."""

    message = models.OneToOneField(
        Message, on_delete=models.CASCADE, primary_key=True, related_name="chunk_log"
    )
    # [{"t": 0.0, "request": "req_…"}, {"t": 0.41, "data": "data: {…}\n\n"}, …]
    entries = models.JSONField(default=list)
    size = models.PositiveIntegerField(default=0)  # bytes of body kept
    truncated = models.BooleanField(default=False)  # the body went on past the bound
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"Chunk log of #{self.message_id}"


class UserSettings(models.Model):
    """A user's preferences for new conversations."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="chat_settings"
    )
    default_system_prompt = models.TextField(blank=True)
    default_model = models.CharField(max_length=200, blank=True)

    def __str__(self) -> str:
        return f"Settings of {self.user}"


class ImportJob(models.Model):
    """One import of a file: checked whole first, then written in short transactions while
    its conversations stay hidden (Conversation.importing); progress for the page, and a
    heartbeat so that what a crashed process left half-written is found and deleted."""

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        COMPLETE = "complete", "Complete"
        FAILED = "failed", "Failed"

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="import_jobs"
    )
    name = models.CharField(max_length=200, blank=True)  # the uploaded file's name
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    conversations_total = models.PositiveIntegerField(default=0)
    messages_total = models.PositiveIntegerField(default=0)
    conversations_done = models.PositiveIntegerField(default=0)
    messages_done = models.PositiveIntegerField(default=0)
    # A sentence for the person; the traceback goes to the log.
    error = models.TextField(blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    # Refreshed by every transaction of the writer; a running job whose heartbeat is stale
    # belonged to a process that died, and its rows are deleted.
    heartbeat_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["running", "complete", "failed"]),
                name="importjob_status_valid",
            ),
            # One import at a time per owner: a second would double the load for nothing.
            models.UniqueConstraint(
                fields=["owner"],
                condition=Q(status="running"),
                name="importjob_one_running_per_owner",
            ),
        ]
        indexes = [
            models.Index(
                fields=["heartbeat_at"],
                condition=Q(status="running"),
                name="importjob_running_heartbeat",
            ),
        ]

    def __str__(self) -> str:
        return f"Import {self.public_id} ({self.status})"

    @staticmethod
    def stale_after() -> float:
        """Seconds without a heartbeat after which a running import is presumed dead (its
        writer beats with every transaction, at most a lock timeout apart)."""
        return float(settings.CHATSITE_IMPORT_STALE_AFTER)

    @property
    def stalled(self) -> bool:
        """Running, but its writer stopped beating: the process writing it died."""
        silent = (timezone.now() - self.heartbeat_at).total_seconds()
        return self.status == self.Status.RUNNING and silent > self.stale_after()


class ShareLink(models.Model):
    """A read-only copy of a conversation's path, at an unguessable address.

    A snapshot: the messages' text is copied (SharedMessage) when the link is made, so
    later messages, edits, regenerations or continues never change what it shows. It
    stops serving when its owner revokes it, a moderator takes it down, or its owner is
    suspended or deactivated (share_selectors.share_get_public checks all of them); it is
    deleted with its conversation, and so with its owner's account."""

    # secrets.token_urlsafe(24): 32 characters, 192 random bits; never the conversation's id.
    token = models.CharField(max_length=64, unique=True, editable=False)
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="share_links"
    )
    title = models.CharField(max_length=200, blank=True)  # the conversation's, when shared
    show_owner_name = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    taken_down_at = models.DateTimeField(null=True, blank=True)
    taken_down_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    taken_down_reason = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "shared conversation"
        constraints = [
            # A take-down always says why (the moderators' record of it).
            models.CheckConstraint(
                condition=Q(taken_down_at=None) | ~Q(taken_down_reason=""),
                name="sharelink_take_down_has_reason",
            ),
        ]
        indexes = [models.Index(fields=["conversation", "-created_at"], name="share_conv_recent")]

    def __str__(self) -> str:
        return f"Share of {self.title or 'a conversation'} ({self.created_at:%Y-%m-%d})"

    @property
    def display_title(self) -> str:
        return self.title or "New conversation"


class SharedMessage(models.Model):
    """One message of a share as it was when shared: role, text, model and status copied.
    `source` stays linked only so that a message hidden by moderation later is hidden in
    the share too."""

    share = models.ForeignKey(ShareLink, on_delete=models.CASCADE, related_name="messages")
    source = models.ForeignKey(
        Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    position = models.PositiveIntegerField()
    role = models.CharField(max_length=16, choices=Message.Role.choices)
    content = models.TextField(blank=True)
    model = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=16, choices=Message.Status.choices)
    finish_reason = models.CharField(max_length=32, blank=True)
    hidden = models.BooleanField(default=False)  # hidden by moderation when shared
    created_at = models.DateTimeField()  # the message's own time

    class Meta:
        ordering = ["share", "position"]
        constraints = [
            models.UniqueConstraint(fields=["share", "position"], name="sharedmessage_position"),
            models.CheckConstraint(
                condition=~Q(status="streaming"), name="sharedmessage_never_streaming"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.role} #{self.position} of share {self.share_id}"


class AttachmentStorage(LazyObject):
    """Where attached files live, STORAGES["attachments"] (never served by URL), looked
    up on first use: like Django's default_storage, a test that changes STORAGES resets
    it (`_wrapped = empty`)."""

    def _setup(self) -> None:
        self._wrapped = storages["attachments"]


ATTACHMENT_STORAGE = AttachmentStorage()


def attachment_storage() -> Storage:
    return cast("Storage", ATTACHMENT_STORAGE)


def attachment_path(instance: Attachment, filename: str) -> str:
    # Never the uploaded name: a stored file's path says nothing and cannot collide.
    return f"{instance.owner_id}/{uuid.uuid4().hex}"


class Attachment(models.Model):
    """A file a user attached to a message: uploaded first (no message: pending, the
    composer shows it as a chip), then linked to the user message it was sent with, in
    that message's transaction. Text and PDFs keep their text (what the model is sent);
    images are sent as they are stored (re-encoded on upload). The stored file goes with
    the last row naming it (services: on commit)."""

    class Kind(models.TextChoices):
        TEXT = "text", "Text"
        PDF = "pdf", "PDF"
        IMAGE = "image", "Image"

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="attachments"
    )
    message = models.ForeignKey(
        Message, null=True, blank=True, on_delete=models.CASCADE, related_name="attachments"
    )
    name = models.CharField(max_length=200)  # the uploaded file's name, shown, never a path
    kind = models.CharField(max_length=8, choices=Kind.choices)
    content_type = models.CharField(max_length=100)
    size = models.PositiveBigIntegerField()  # bytes stored
    file = models.FileField(storage=attachment_storage, upload_to=attachment_path, max_length=255)
    text = models.TextField(blank=True)  # extracted text (text files, PDFs)
    pages = models.PositiveIntegerField(null=True, blank=True)  # PDFs
    width = models.PositiveIntegerField(null=True, blank=True)  # images
    height = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind__in=["text", "pdf", "image"]), name="attachment_kind_valid"
            ),
        ]
        indexes = [
            models.Index(fields=["owner", "created_at"], name="attachment_owner_created"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"


class SharedAttachment(models.Model):
    """A file attached to a shared user message, as it was when shared: its name, kind
    and size only. Never the file or a link to it (attached files stay their owner's:
    the shared page shows a chip saying so)."""

    shared_message = models.ForeignKey(
        SharedMessage, on_delete=models.CASCADE, related_name="attachments"
    )
    position = models.PositiveIntegerField()
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=8, choices=Attachment.Kind.choices)
    size = models.PositiveBigIntegerField()

    class Meta:
        ordering = ["shared_message", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["shared_message", "position"], name="sharedattachment_position"
            ),
            models.CheckConstraint(
                condition=Q(kind__in=["text", "pdf", "image"]), name="sharedattachment_kind_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} of shared message {self.shared_message_id}"
