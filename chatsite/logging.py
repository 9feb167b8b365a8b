"""A logging filter that keeps the upstream API key out of every log line."""

import logging

from django.conf import settings


class RedactSecretsFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        key = getattr(settings, "OPENAI_API_KEY", "")
        if key and len(key) >= 8:
            message = record.getMessage()
            if key in message:
                # Render now so that the key is gone before any handler formats args.
                record.msg = message.replace(key, "[redacted]")
                record.args = None
        return True
