"""An answer is indexed for search when it ends, not at every checkpoint while it streams.

Each checkpoint re-indexed the whole text so far: 98% of a checkpoint's SQL on SQLite
(0.77 ms for 6.5 KB, against 0.007 ms for the update alone), so an answer cost time in
proportion to its length times its duration, in the one database thread. A streaming
answer is now indexed as empty text: its question and its conversation's title are found
at once, its own words when it ends, however it ends (a final save, Stop, a crash that
the supervisor marks interrupted): all of these change its status.

SQLite: the triggers index `CASE WHEN status = 'streaming' THEN '' ELSE content END` and
skip an update that leaves a streaming answer streaming. The external-content table is
still `conversations_message`, so a 'rebuild' reads the streaming answers' text; the
statements in REBUILD then index those answers as empty, as the triggers expect (a
'delete' must be given exactly the text that was indexed). PostgreSQL: the stored
tsvector is generated from the same expression (a column's expression cannot be altered
before PostgreSQL 17: it is dropped and added again, its index with it).
"""

import importlib

from django.db import migrations

search = importlib.import_module("conversations.migrations.0006_search")

_INDEXED_NEW = "CASE WHEN new.status = 'streaming' THEN '' ELSE new.content END"
_INDEXED_OLD = "CASE WHEN old.status = 'streaming' THEN '' ELSE old.content END"

DROP_TRIGGERS = [
    "DROP TRIGGER IF EXISTS conversations_message_fts_insert",
    "DROP TRIGGER IF EXISTS conversations_message_fts_delete",
    "DROP TRIGGER IF EXISTS conversations_message_fts_update",
]
TRIGGERS = [
    f"""CREATE TRIGGER conversations_message_fts_insert AFTER INSERT ON conversations_message
    BEGIN
        INSERT INTO conversations_message_fts(rowid, content) VALUES (new.id, {_INDEXED_NEW});
    END""",
    f"""CREATE TRIGGER conversations_message_fts_delete AFTER DELETE ON conversations_message
    BEGIN
        INSERT INTO conversations_message_fts(conversations_message_fts, rowid, content)
        VALUES ('delete', old.id, {_INDEXED_OLD});
    END""",
    # A checkpoint (streaming before and after) changes nothing that is indexed.
    f"""CREATE TRIGGER conversations_message_fts_update
    AFTER UPDATE OF content, status ON conversations_message
    WHEN NOT (old.status = 'streaming' AND new.status = 'streaming')
        AND (old.status IS NOT new.status OR old.content IS NOT new.content)
    BEGIN
        INSERT INTO conversations_message_fts(conversations_message_fts, rowid, content)
        VALUES ('delete', old.id, {_INDEXED_OLD});
        INSERT INTO conversations_message_fts(rowid, content) VALUES (new.id, {_INDEXED_NEW});
    END""",
]
REBUILD = [
    "INSERT INTO conversations_message_fts(conversations_message_fts) VALUES ('rebuild')",
    """INSERT INTO conversations_message_fts(conversations_message_fts, rowid, content)
    SELECT 'delete', id, content FROM conversations_message WHERE status = 'streaming'""",
    """INSERT INTO conversations_message_fts(rowid, content)
    SELECT id, '' FROM conversations_message WHERE status = 'streaming'""",
]
# Before this migration: 0006's triggers, and every text indexed as it is.
OLD_TRIGGERS = [t for t in search.TRIGGERS if "conversations_message_fts" in t]
OLD_REBUILD = [r for r in search.REBUILD if "conversations_message_fts" in r]


def _vector(expression: str) -> list[str]:
    return [
        "ALTER TABLE conversations_message DROP COLUMN IF EXISTS search_vector",
        f"""ALTER TABLE conversations_message ADD COLUMN search_vector tsvector
        GENERATED ALWAYS AS (to_tsvector('simple'::regconfig, {expression})) STORED""",
        "CREATE INDEX conversations_message_fts ON conversations_message USING GIN (search_vector)",
    ]


FORWARD = {
    "sqlite": DROP_TRIGGERS + TRIGGERS + REBUILD,
    "postgresql": _vector("CASE WHEN status = 'streaming' THEN ''::text ELSE content END"),
}
BACKWARD = {
    "sqlite": DROP_TRIGGERS + OLD_TRIGGERS + OLD_REBUILD,
    "postgresql": _vector("content"),
}


def reinstall_sqlite_triggers(apps, schema_editor):  # type: ignore[no-untyped-def]
    """For later migrations: on SQLite, altering a column of conversations_message remakes
    the table, and its triggers go with the old one. A migration that does so must call
    this afterwards (it also re-indexes what was copied)."""
    if schema_editor.connection.vendor != "sqlite":
        return
    for statement in DROP_TRIGGERS + TRIGGERS + REBUILD:
        schema_editor.execute(statement)


def _run(statements: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    def run(apps, schema_editor):  # type: ignore[no-untyped-def]
        for statement in statements.get(schema_editor.connection.vendor, []):
            schema_editor.execute(statement)

    return run


class Migration(migrations.Migration):
    dependencies = [("conversations", "0013_shared_attachment")]

    operations = [migrations.RunPython(_run(FORWARD), _run(BACKWARD))]
