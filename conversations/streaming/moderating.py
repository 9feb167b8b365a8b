"""Moderation beside one answer: the user's new message is screened before anything goes
upstream; the answer is screened in batches of whole sentences while it streams, one
screening in flight at a time (text arriving meanwhile makes the next batch bigger), so
screening never slows the stream; its last sentence is screened when it ends.

A screening that fails (the database, the moderation endpoint, a bug) is logged at ERROR
with its traceback and follows CHATSITE_SCREENING_ON_ERROR: "allow" lets the text through
unscreened, "block" treats it as a verdict that stops the answer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from channels.db import database_sync_to_async
from django.conf import settings

from moderation import screening
from moderation import services as moderation_services
from moderation.models import Action, Flag

from .. import fragments, upstream
from ..message_selectors import MessageView
from ..models import Message

log = logging.getLogger(__name__)

# Where an answer may be cut into batches for screening: sentence and block ends.
SENTENCE_ENDS = (". ", "! ", "? ", ".\n", "!\n", "?\n", "\n\n")


class QuestionBlocked(Exception):
    """Screening blocked the user's message: nothing goes upstream."""


class AnswerModeration:
    def __init__(
        self,
        *,
        answer: Message,
        config: upstream.UpstreamConfig,
        stop: Callable[[], None],
        screened: int = 0,
    ) -> None:
        self.answer = answer
        self.config = config
        self.stop = stop  # stops the answer, as Stop does
        self.screened = screened  # characters of the answer already screened
        self.due = asyncio.Event()  # set when new finished text may hold a sentence
        self.verdict: screening.Verdict | None = None  # the one that stopped the answer

    async def question(self, view: MessageView, publish: Callable[[str], Awaitable[None]]) -> None:
        """Screen the user's new message; QuestionBlocked if it may not go upstream (it is
        then hidden, and `publish` shows the page its hidden state)."""
        question = view.message
        # The text of its attached files is screened with it: a file is no way round.
        files = [a.text for a in view.attachments if a.text]
        verdict = await self._screen("\n\n".join([question.content, *files]), question)
        if not verdict.stops:
            return
        reason = f"Not sent: it goes against this site's rules ({verdict.category})."
        await database_sync_to_async(moderation_services.message_hide)(
            message_id=question.pk, reason=reason
        )
        question.hidden, question.hidden_reason = True, reason
        await publish(fragments.message_html(view))
        raise QuestionBlocked(
            "Your message was not sent to the model: it goes against this site's rules "
            f"({verdict.category})."
        )

    async def loop(self, published: Callable[[], str]) -> None:
        """Screen each new batch of whole sentences of the published text."""
        while True:
            await self.due.wait()
            self.due.clear()
            rest = published()[self.screened :]
            cut = max(rest.rfind(mark) for mark in SENTENCE_ENDS)
            if cut < 0:
                continue  # no whole sentence yet
            batch = rest[: cut + 1]
            self.screened += len(batch)
            if batch.strip():
                await self.answer_batch(batch)

    async def rest(self, text: str) -> None:
        """The end of the answer, only whole now; bounded, so it never holds the save."""
        rest = text[self.screened :]
        if self.verdict is not None or not rest.strip():
            return
        try:
            async with asyncio.timeout(settings.CHATSITE_SCREENING_TIMEOUT + 1):
                await self.answer_batch(rest)
        except TimeoutError:
            log.warning("screening the end of answer %s timed out", self.answer.pk)

    async def answer_batch(self, batch: str) -> None:
        verdict = await self._screen(batch, self.answer)
        if verdict.stops and self.verdict is None:
            self.verdict = verdict
            self.stop()  # as with Stop: the upstream connection closes at once

    async def _screen(self, text: str, message: Message) -> screening.Verdict:
        try:
            verdict = await screening.screen(text, config=self.config)
            if verdict.flagged:
                await database_sync_to_async(moderation_services.flag_from_verdict)(
                    message=message, verdict=verdict
                )
        except asyncio.CancelledError:
            raise
        except Exception:
            # Deliberately broad: whatever broke, the operator's policy decides what
            # unscreened text may do; screening must not just stop, unseen, for this
            # answer (it used to, on a database error).
            log.exception("screening message %s failed", message.pk)
            if settings.CHATSITE_SCREENING_ON_ERROR != "block":
                return screening.Verdict()
            finding = screening.Finding(Flag.Source.ERROR, screening.ERROR_CATEGORY)
            return screening.Verdict(findings=[finding], action=Action.STOP)
        return verdict
