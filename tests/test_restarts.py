"""Restarts: graceful shutdowns save partial answers; dead processes' answers are found."""

from __future__ import annotations

import gc
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pytest

from chatsite import lifecycle
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


def assert_a_signal_mid_answer_saves_it(
    fake_server: FakeUpstream, tmp_path: Path, sig: int, *, sigint_ignored: bool = False
) -> None:
    fake_server.reset()
    fake_server.enqueue(Stream(PIECES, interval=0.02))
    # Checkpoints far apart: what is saved must come from the shutdown, not a checkpoint.
    env = env_for(fake_server, CHATSITE_CHECKPOINT_INTERVAL="60")
    site = LiveSite(tmp_path, env, sigint_ignored=sigint_ignored)
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


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_graceful_shutdown_saves_the_partial_answer_as_interrupted(
    fake_server: FakeUpstream, tmp_path: Path, sig: int
) -> None:
    assert_a_signal_mid_answer_saves_it(fake_server, tmp_path, sig)


def test_sigint_saves_the_partial_answer_even_when_daphne_inherited_sigint_ignored(
    fake_server: FakeUpstream, tmp_path: Path
) -> None:
    # A background job of a script (and so a CI step started that way) begins with SIGINT
    # ignored; Twisted then leaves SIGINT alone and, before the fix, the signal was
    # discarded: no shutdown, the answer streamed on until the test killed daphne.
    assert_a_signal_mid_answer_saves_it(fake_server, tmp_path, signal.SIGINT, sigint_ignored=True)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_as_soon_as_the_site_answers_shuts_it_down_gracefully(
    tmp_path: Path, sig: int
) -> None:
    # The site answering is what every live test waits for: by then both signals must
    # already lead to the graceful shutdown, with no request made yet.
    site = LiveSite(tmp_path)
    site.migrate()
    site.start()
    assert site.stop(sig, wait=60) == 0, site.log()
    assert "shutting down: saving answers still being written" in site.log()


class FakeReactor:
    """Twisted's reactor as far as its signal handlers go."""

    def sigInt(self, number: int, frame: FrameType | None = None) -> None:
        raise AssertionError("never called")

    def sigTerm(self, number: int, frame: FrameType | None = None) -> None:
        raise AssertionError("never called")


@pytest.fixture
def signal_handlers() -> Iterator[None]:
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


@pytest.mark.usefixtures("signal_handlers")
@pytest.mark.parametrize("inherited", [signal.SIG_IGN, signal.SIG_DFL, signal.default_int_handler])
def test_sigint_gets_the_reactors_handler_whatever_the_process_inherited(
    inherited: signal.Handlers,
) -> None:
    reactor = FakeReactor()
    signal.signal(signal.SIGTERM, reactor.sigTerm)  # Twisted handles signals
    signal.signal(signal.SIGINT, inherited)
    assert lifecycle.sigint_like_sigterm(reactor)
    assert signal.getsignal(signal.SIGINT) == reactor.sigInt


@pytest.mark.usefixtures("signal_handlers")
def test_a_sigint_handler_someone_chose_is_left_alone() -> None:
    reactor = FakeReactor()

    def debugger(number: int, frame: FrameType | None) -> None:
        raise AssertionError("never called")

    signal.signal(signal.SIGTERM, reactor.sigTerm)
    signal.signal(signal.SIGINT, debugger)
    assert not lifecycle.sigint_like_sigterm(reactor)
    assert signal.getsignal(signal.SIGINT) is debugger


@pytest.mark.usefixtures("signal_handlers")
def test_sigint_is_left_alone_when_daphne_handles_no_signals() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # daphne run with signal_handlers=False
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    assert not lifecycle.sigint_like_sigterm(FakeReactor())
    assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN


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


def test_what_the_process_built_before_serving_is_left_out_of_garbage_collection() -> None:
    # Called as the reactor starts; a full collection then walks only what came after.
    already = gc.get_freeze_count()
    try:
        frozen = lifecycle.heap_freeze()
        assert frozen >= 10_000  # Django, the apps, the URLs: all long-lived
        assert gc.get_freeze_count() == frozen
        assert len(gc.get_objects()) == 0  # nothing left for the collector to walk
        garbage: list[object] = []
        garbage.append(garbage)  # a cycle made afterwards is still collected
        del garbage
        assert gc.collect() >= 1
    finally:
        gc.unfreeze()
        if already:
            gc.freeze()
