"""Screening text: local rules (edited in admin) and, when enabled, the upstream's
/moderations endpoint. A verdict names the flagged categories and the strongest action
their policies ask for. Screening failures never crash anything: they count as "not
flagged" or as "blocked" according to CHATSITE_SCREENING_ON_ERROR.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass, field

from channels.db import database_sync_to_async
from django.conf import settings

from conversations import upstream, upstream_errors

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


Rules = list[tuple[re.Pattern[str], str]]
_rules_cache: tuple[float, Rules] | None = None
_rules_loading: asyncio.Future[Rules] | None = None


def rules_forget() -> None:
    """Drop this process's copy of the rules (a rule was saved or deleted here)."""
    global _rules_cache, _rules_loading
    _rules_cache = _rules_loading = None


async def _rules_current() -> Rules:
    # Every sentence batch of every streaming answer is screened: the rules come from
    # memory, re-read at most every CHATSITE_SCREENING_RULES_SECONDS, by one reader at a
    # time (a hundred answers starting together would otherwise all read them).
    global _rules_cache, _rules_loading
    now = time.monotonic()
    cached = _rules_cache
    if cached is not None and now - cached[0] < settings.CHATSITE_SCREENING_RULES_SECONDS:
        return cached[1]
    loading = _rules_loading
    if loading is None or loading.done() or loading.get_loop() is not asyncio.get_running_loop():
        loading = _rules_loading = asyncio.ensure_future(database_sync_to_async(_rules)())
    rules = await asyncio.shield(loading)
    if _rules_loading is loading:  # not forgotten meanwhile
        _rules_cache = (now, rules)
    return rules


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
    rules = await _rules_current()
    findings = rule_findings(text, rules)
    if settings.CHATSITE_MODERATION_ENDPOINT and config is not None:
        try:
            async with asyncio.timeout(settings.CHATSITE_SCREENING_TIMEOUT):
                result = await upstream.moderate(
                    config, text=text, model=settings.CHATSITE_MODERATION_MODEL
                )
        except (upstream_errors.UpstreamError, TimeoutError) as exc:
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
