"""Which models a conversation may use: what the upstream lists (GET /models), cached
for a few minutes, narrowed by the operator's CHATSITE_MODELS when set. When listing
fails the configured list (or the default model) stands in, so the site keeps working
with servers that do not implement /models. On an upstream with a concurrency limit the
list is asked for only while no answer runs or waits (gate.py).
"""

from __future__ import annotations

import logging
import time

from django.conf import settings

from . import gate, upstream, upstream_errors

log = logging.getLogger(__name__)

FAILURE_TTL = 30.0  # seconds before a failed listing is tried again

_cache: dict[str, tuple[float, list[str] | None]] = {}
# What went wrong the last time the upstream was asked for its models, by base URL.
_problems: dict[str, upstream_errors.UpstreamError] = {}
# Failures that mean answers will fail too (a server without GET /models is not one).
SERVICE_DOWN = {
    upstream_errors.ErrorKind.UNREACHABLE,
    upstream_errors.ErrorKind.CONNECTION,
    upstream_errors.ErrorKind.TIMEOUT,
    upstream_errors.ErrorKind.UNAVAILABLE,
    upstream_errors.ErrorKind.AUTH,
}


def cache_clear() -> None:
    _cache.clear()
    _problems.clear()


def service_problem(*, config: upstream.UpstreamConfig) -> str:
    """A sentence for the page when the model service could not be used the last time it
    was asked (moments ago: listing the models does it), else "". It shows before anyone
    types a message that would fail."""
    problem = _problems.get(config.base_url)
    if problem is None or problem.kind not in SERVICE_DOWN:
        return ""
    return f"{problem.user_message} Answers will fail until it is back."


async def _listed(config: upstream.UpstreamConfig) -> list[str] | None:
    now = time.monotonic()
    cached = _cache.get(config.base_url)
    if cached is not None and cached[0] > now:
        return cached[1]
    try:
        models = await gate.in_background(config, lambda: upstream.list_models(config), wait=False)
        listed: list[str] | None = sorted(set(models))
        ttl = settings.CHATSITE_MODELS_CACHE_SECONDS
        _problems.pop(config.base_url, None)
    except gate.Busy:
        # A limited upstream is writing an answer: asking now could cut it short (or
        # wait behind it). The last list stands in, however old; asked again later.
        return cached[1] if cached is not None else None
    except upstream_errors.UpstreamError as exc:
        log.warning("listing the upstream's models failed: %s", exc.kind.value)
        listed, ttl = None, FAILURE_TTL
        _problems[config.base_url] = exc
    _cache[config.base_url] = (now + ttl, listed)
    return listed


async def model_choices(*, config: upstream.UpstreamConfig) -> list[str]:
    """The models to offer, the default first."""
    default = settings.OPENAI_MODEL
    if settings.CHATSITE_DEMO_MODE:
        listed: list[str] | None = list(settings.CHATSITE_DEMO_MODELS)  # ours: no need to ask
    else:
        listed = await _listed(config)
    allowed = settings.CHATSITE_MODELS
    if allowed:
        choices = [m for m in allowed if listed is None or m in listed] or list(allowed)
    else:
        choices = listed or [default]
    if default in choices:
        choices = [default, *[m for m in choices if m != default]]
    return choices
