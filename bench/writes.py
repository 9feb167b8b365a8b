"""Counting the site's database writes (INSERT, UPDATE, DELETE) by table, for the benchmark."""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

from django.apps import AppConfig
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created
from django.http import HttpRequest, JsonResponse

_WRITE = re.compile(
    r'^\s*(INSERT\s+(?:OR\s+\w+\s+)?INTO|UPDATE|DELETE\s+FROM)\s+"?(\w+)"?', re.IGNORECASE
)
COUNTS: Counter[str] = Counter()
_LOCK = threading.Lock()  # database work runs in several threads


def count_write(sql: str) -> None:
    match = _WRITE.match(sql)
    if match:
        verb = match.group(1).split()[0].upper()
        with _LOCK:
            COUNTS[f"{verb} {match.group(2)}"] += 1


def _wrapper(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
    count_write(sql)
    return execute(sql, params, many, context)


def _install(sender: Any, connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
    if _wrapper not in connection.execute_wrappers:
        connection.execute_wrappers.append(_wrapper)


def writes_view(request: HttpRequest) -> JsonResponse:
    with _LOCK:
        return JsonResponse({"writes": dict(COUNTS)})


class WritesConfig(AppConfig):
    name = "bench"
    label = "bench_writes"

    def ready(self) -> None:
        connection_created.connect(_install)
