"""Restarts: graceful shutdowns save partial answers; dead processes' answers are found."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.fake_openai import FakeUpstream, Stream
from tests.live import LiveSite, SiteClient

pytestmark = pytest.mark.services

PIECES = [f"w{i} " for i in range(2000)]


def env_for(fake: FakeUpstream, **extra: str) -> dict[str, str]:
    return {
        "OPENAI_BASE_URL": fake.base_url,
        "OPENAI_API_KEY": "sk-restart-test",
        "OPENAI_MODEL": "fake-model",
        **extra,
    }


def wait_for(predicate: object, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def answer_row(site: LiveSite) -> tuple[str, str, str]:
    rows = site.query(
        "SELECT status, content, error FROM conversations_message WHERE role = 'assistant'"
    )
    assert len(rows) == 1
    return rows[0]


def pieces_in(content: str) -> int:
    assert "".join(PIECES).startswith(content), content[-80:]
    return content.count(" ")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_graceful_shutdown_saves_the_partial_answer_as_interrupted(
    fake_server: FakeUpstream, tmp_path: Path, sig: int
) -> None:
    fake_server.reset()
    fake_server.enqueue(Stream(PIECES, interval=0.02))
    # Checkpoints far apart: what is saved must come from the shutdown, not a checkpoint.
    site = LiveSite(tmp_path, env_for(fake_server, CHATSITE_CHECKPOINT_INTERVAL="60"))
    site.migrate()
    site.start()
    client = SiteClient(site.base)
    client.sign_up()
    client.new_conversation("Tell me everything")
    log = fake_server.wait_for_request()
    wait_for(lambda: log.chunks_sent >= 40)

    sent_at_signal = log.chunks_sent
    # Generous: on a loaded machine the saving and the reactor's own shutdown take a while.
    assert site.stop(sig, wait=60) == 0, site.log()

    status, content, error = answer_row(site)
    assert status == "interrupted"
    assert "restarted" in error
    assert pieces_in(content) >= sent_at_signal - 3  # everything received was kept
    assert log.wait_closed(2.0)  # and the upstream was hung up on


def test_after_a_hard_kill_a_restart_marks_the_answer_interrupted(
    fake_server: FakeUpstream, tmp_path: Path
) -> None:
    fake_server.reset()
    fake_server.enqueue(Stream(PIECES, interval=0.02))
    env = env_for(fake_server, CHATSITE_HEARTBEAT_INTERVAL="0.3", CHATSITE_STALE_AFTER="1.5")
    site = LiveSite(tmp_path, env)
    site.migrate()
    site.start()
    client = SiteClient(site.base)
    client.sign_up()
    client.new_conversation("Tell me everything")
    log = fake_server.wait_for_request()
    wait_for(lambda: log.chunks_sent >= 150)

    sent_at_kill = log.chunks_sent
    site.kill()
    assert answer_row(site)[0] == "streaming"  # the dead process could not say otherwise

    site.start()  # the new process finds the orphan without any request
    wait_for(lambda: answer_row(site)[0] != "streaming")
    status, content, _ = answer_row(site)
    assert status == "interrupted"
    # At most about a second of text is lost (checkpoints every second, 50 pieces/s).
    assert pieces_in(content) >= sent_at_kill - 75
    site.stop()


def test_a_live_process_finds_the_answers_of_a_dead_one(
    fake_server: FakeUpstream, tmp_path: Path
) -> None:
    fake_server.reset()
    fake_server.enqueue(Stream(PIECES, interval=0.02))
    env = env_for(fake_server, CHATSITE_HEARTBEAT_INTERVAL="0.3", CHATSITE_STALE_AFTER="1.5")
    a = LiveSite(tmp_path, env, name="a")
    a.migrate()
    a.start()
    b = LiveSite(tmp_path, env, name="b").start()  # same database, still running
    client = SiteClient(a.base)
    client.sign_up()
    client.new_conversation("Tell me everything")
    log = fake_server.wait_for_request()
    wait_for(lambda: log.chunks_sent >= 100)
    a.kill()

    wait_for(lambda: answer_row(a)[0] != "streaming", timeout=10)
    assert answer_row(a)[0] == "interrupted"
    # A live answer of a live process is never touched by the check.
    fake_server.enqueue(Stream(["fine"] * 200, interval=0.02))
    client_b = SiteClient(b.base)
    client_b.sign_up("bob")
    client_b.new_conversation("Are you there?")
    time.sleep(2.5)
    rows = b.query("SELECT status FROM conversations_message WHERE role = 'assistant' ORDER BY id")
    assert rows[-1][0] in ("streaming", "complete")
    b.stop()
