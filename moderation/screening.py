"""Screening text: local rules (edited in admin) and, when enabled, the upstream's
/moderations endpoint. A verdict names the flagged categories and the strongest action
their policies ask for. Screening failures never crash anything: they count as "not
flagged" or as "blocked" according to CHATSITE_SCREENING_ON_ERROR.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, field

from channels.db import database_sync_to_async
from django.conf import settings

from conversations import upstream

from .models import Action, Flag, Policy, Rule

log = logging.getLogger(__name__)

SEVERITY = {Action.FLAG: 1, Action.BLOCK: 2, Action.STOP: 2}
ERROR_CATEGORY = "screening-unavailable"


@dataclass
class Finding:
    source: str  # Flag.Source
    category: str
    excerpt: str = ""
    scores: dict[str, float] = field(default_factory=dict)


@dataclass
class Verdict:
    findings: list[Finding] = field(default_factory=list)
    action: str = ""  # "" (nothing flagged), or an Action

    @property
    def flagged(self) -> bool:
        return bool(self.findings)

    @property
    def stops(self) -> bool:
        """Block a message / stop an answer (the policy's two strong actions)."""
        return self.action in (Action.BLOCK, Action.STOP)

    @property
    def category(self) -> str:
        return self.findings[0].category if self.findings else ""


def _rules() -> list[tuple[re.Pattern[str], str]]:
    compiled = []
    for rule in Rule.objects.filter(enabled=True).only("pattern", "is_regex", "category"):
        source = rule.pattern if rule.is_regex else rf"(?<!\w){re.escape(rule.pattern)}(?!\w)"
        try:
            compiled.append((re.compile(source, re.IGNORECASE), rule.category))
        except re.error:
            log.warning("screening rule %s is not a valid regular expression", rule.pk)
    return compiled


def _policies() -> dict[str, str]:
    return dict(Policy.objects.values_list("category", "action"))


def rule_findings(text: str, rules: list[tuple[re.Pattern[str], str]]) -> list[Finding]:
    findings = []
    for pattern, category in rules:
        match = pattern.search(text)
        if match:
            start = max(0, match.start() - 80)
            findings.append(
                Finding(Flag.Source.RULE, category, excerpt=text[start : match.end() + 80])
            )
    return findings


async def screen(text: str, *, config: upstream.UpstreamConfig | None) -> Verdict:
    """Rules and endpoint together (concurrently); the verdict's action follows policy."""
    if not text.strip():
        return Verdict()
    rules = await database_sync_to_async(_rules)()
    findings = rule_findings(text, rules)
    if settings.CHATSITE_MODERATION_ENDPOINT and config is not None:
        try:
            async with asyncio.timeout(settings.CHATSITE_SCREENING_TIMEOUT):
                result = await upstream.moderate(
                    config, text=text, model=settings.CHATSITE_MODERATION_MODEL
                )
        except (upstream.UpstreamError, TimeoutError) as exc:
            log.warning("screening by the moderation endpoint failed: %r", exc)
            if settings.CHATSITE_SCREENING_ON_ERROR == "block":
                findings.append(Finding(Flag.Source.ERROR, ERROR_CATEGORY, excerpt=text[:300]))
        else:
            for category in result.flagged_categories:
                findings.append(
                    Finding(Flag.Source.ENDPOINT, category, text[:300], scores=result.scores)
                )
    if not findings:
        return Verdict()
    policies = await database_sync_to_async(_policies)()
    action = Action.FLAG
    for finding in findings:
        wanted = (
            Action.BLOCK
            if finding.source == Flag.Source.ERROR
            else policies.get(finding.category, Action.FLAG)
        )
        if SEVERITY.get(Action(wanted), 1) > SEVERITY[action]:
            action = Action(wanted)
    # The finding that decided comes first.
    findings.sort(key=lambda f: -SEVERITY.get(Action(policies.get(f.category, "flag")), 1))
    return Verdict(findings=findings, action=action)
