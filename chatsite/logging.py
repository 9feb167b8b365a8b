"""A logging filter that keeps the upstream API key (and single sign-on's client secrets)
out of every log line."""

import logging

from django.conf import settings


class RedactSecretsFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        keys = [
            key
            for key in (
                getattr(settings, "OPENAI_API_KEY", ""),
                getattr(settings, "CHATSITE_DEMO_API_KEY", ""),
                # single sign-on's client secrets (an error quoting a token request)
                *(p.secret for p in getattr(settings, "CHATSITE_OIDC_PROVIDERS", ())),
                *(p.secret for p in getattr(settings, "CHATSITE_OAUTH_PROVIDERS", ())),
            )
            if key and len(key) >= 8
        ]
        if keys:
            message = record.getMessage()
            if any(key in message for key in keys):
                # Render now so that the key is gone before any handler formats args.
                record.msg = _redacted(message, keys)
                record.args = None
            if record.exc_info and not record.exc_text:
                # A traceback is formatted by the handler, after every filter: format it
                # here (the handler reuses exc_text) so an exception quoting a key is
                # redacted too.
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            if record.exc_text and any(key in record.exc_text for key in keys):
                record.exc_text = _redacted(record.exc_text, keys)
        return True


def _redacted(text: str, keys: list[str]) -> str:
    for key in keys:
        text = text.replace(key, "[redacted]")
    return text
