"""Full-text search over titles and message text.

SQLite: FTS5 tables with external content, kept in sync by triggers, so every write is
indexed whoever makes it (streaming checkpoints, admin, imports); existing rows are
indexed here. PostgreSQL: a stored tsvector of each message and GIN indexes.
"""

from django.db import migrations

SQLITE_FORWARD = [
    # unicode61 with diacritics removed: "cafe" finds "café"; no stemming, any language.
    # prefix: indexes of 2- to 4-letter prefixes, so that results while typing stay fast.
    """CREATE VIRTUAL TABLE conversations_message_fts USING fts5(
        content, content='conversations_message', content_rowid='id',
        tokenize='unicode61 remove_diacritics 2', prefix='2 3 4')""",
    """CREATE TRIGGER IF NOT EXISTS conversations_message_fts_insert AFTER INSERT ON conversations_message
    BEGIN
        INSERT INTO conversations_message_fts(rowid, content) VALUES (new.id, new.content);
    END""",
    """CREATE TRIGGER IF NOT EXISTS conversations_message_fts_delete AFTER DELETE ON conversations_message
    BEGIN
        INSERT INTO conversations_message_fts(conversations_message_fts, rowid, content)
        VALUES ('delete', old.id, old.content);
    END""",
    """CREATE TRIGGER IF NOT EXISTS conversations_message_fts_update
    AFTER UPDATE OF content ON conversations_message
    BEGIN
        INSERT INTO conversations_message_fts(conversations_message_fts, rowid, content)
        VALUES ('delete', old.id, old.content);
        INSERT INTO conversations_message_fts(rowid, content) VALUES (new.id, new.content);
    END""",
    "INSERT INTO conversations_message_fts(conversations_message_fts) VALUES ('rebuild')",
    """CREATE VIRTUAL TABLE conversations_title_fts USING fts5(
        title, content='conversations_conversation', content_rowid='id',
        tokenize='unicode61 remove_diacritics 2', prefix='2 3 4')""",
    """CREATE TRIGGER IF NOT EXISTS conversations_title_fts_insert AFTER INSERT ON conversations_conversation
    BEGIN
        INSERT INTO conversations_title_fts(rowid, title) VALUES (new.id, new.title);
    END""",
    """CREATE TRIGGER IF NOT EXISTS conversations_title_fts_delete AFTER DELETE ON conversations_conversation
    BEGIN
        INSERT INTO conversations_title_fts(conversations_title_fts, rowid, title)
        VALUES ('delete', old.id, old.title);
    END""",
    """CREATE TRIGGER IF NOT EXISTS conversations_title_fts_update
    AFTER UPDATE OF title ON conversations_conversation
    BEGIN
        INSERT INTO conversations_title_fts(conversations_title_fts, rowid, title)
        VALUES ('delete', old.id, old.title);
        INSERT INTO conversations_title_fts(rowid, title) VALUES (new.id, new.title);
    END""",
    "INSERT INTO conversations_title_fts(conversations_title_fts) VALUES ('rebuild')",
]
SQLITE_BACKWARD = [
    "DROP TRIGGER IF EXISTS conversations_message_fts_insert",
    "DROP TRIGGER IF EXISTS conversations_message_fts_delete",
    "DROP TRIGGER IF EXISTS conversations_message_fts_update",
    "DROP TABLE IF EXISTS conversations_message_fts",
    "DROP TRIGGER IF EXISTS conversations_title_fts_insert",
    "DROP TRIGGER IF EXISTS conversations_title_fts_delete",
    "DROP TRIGGER IF EXISTS conversations_title_fts_update",
    "DROP TABLE IF EXISTS conversations_title_fts",
]
# PostgreSQL: the message text's tsvector is stored (a generated column, so every write
# keeps it right): ranking a pool of matches then reads it instead of re-parsing each text,
# which measured ten times faster on long answers. Titles are short: an expression index.
# The expressions must be the ones conversations/search.py queries, or the index is unused.
POSTGRES_FORWARD = [
    """ALTER TABLE conversations_message ADD COLUMN search_vector tsvector
    GENERATED ALWAYS AS (to_tsvector('simple'::regconfig, content)) STORED""",
    "CREATE INDEX conversations_message_fts ON conversations_message USING GIN (search_vector)",
    """CREATE INDEX conversations_title_fts ON conversations_conversation
    USING GIN (to_tsvector('simple'::regconfig, title))""",
]
POSTGRES_BACKWARD = [
    "DROP INDEX IF EXISTS conversations_message_fts",
    "ALTER TABLE conversations_message DROP COLUMN IF EXISTS search_vector",
    "DROP INDEX IF EXISTS conversations_title_fts",
]


TRIGGERS = [statement for statement in SQLITE_FORWARD if "CREATE TRIGGER" in statement]
REBUILD = [statement for statement in SQLITE_FORWARD if "'rebuild'" in statement]


def reinstall_sqlite_triggers(apps, schema_editor):  # type: ignore[no-untyped-def]
    """For later migrations: on SQLite, altering a column of conversations_message or
    conversations_conversation remakes the table, and its triggers go with the old one.
    A migration that does so must call this afterwards (then re-index what it copied)."""
    if schema_editor.connection.vendor != "sqlite":
        return
    for statement in TRIGGERS + REBUILD:
        schema_editor.execute(statement)


def _run(statements: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    def run(apps, schema_editor):  # type: ignore[no-untyped-def]
        for statement in statements.get(schema_editor.connection.vendor, []):
            schema_editor.execute(statement)

    return run


class Migration(migrations.Migration):
    dependencies = [("conversations", "0005_versions")]

    operations = [
        migrations.RunPython(
            _run({"sqlite": SQLITE_FORWARD, "postgresql": POSTGRES_FORWARD}),
            _run({"sqlite": SQLITE_BACKWARD, "postgresql": POSTGRES_BACKWARD}),
        )
    ]
