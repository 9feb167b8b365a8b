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
                for key in keys:
                    message = message.replace(key, "[redacted]")
                # Render now so that the key is gone before any handler formats args.
                record.msg = message
                record.args = None
        return True
