"""The production profile end to end: `scripts/production.py` (what `make serve-production`
runs) with two daphne workers behind nginx, on PostgreSQL and Redis, all real and started
from deploy/'s files; Chromium talks to nginx only.

Which worker holds what is read from the kernel's socket tables (/proc), so a test can
stop an answer from a tab on the *other* worker, or kill the very worker writing it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import API_KEY, SETTLED, sign_up
from tests.fake_openai import FakeUpstream, Stream
from tests.live import ROOT, free_port

pytestmark = [pytest.mark.browser, pytest.mark.services]

ANSWER = '#messages [data-role="assistant"]'
STALE_AFTER = 4.0  # seconds: the surviving worker's supervisor presumes a silent one dead


@dataclass
class Production:
    url: str
    workers: list[int]  # ports
    state: Path
    process: subprocess.Popen[bytes]

    def pids(self) -> dict[int, int]:
        return {int(k): v for k, v in json.loads((self.state / "workers.json").read_text()).items()}


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def _established() -> list[tuple[int, int, str]]:
    """(local port, remote port, inode) of every established TCP connection."""
    rows = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "01":
                continue
            local = int(fields[1].rsplit(":", 1)[1], 16)
            remote = int(fields[2].rsplit(":", 1)[1], 16)
            rows.append((local, remote, fields[9]))
    return rows


def worker_talking_to(production: Production, port: int) -> int:
    """The worker (its port) with a connection open to `port` (the model server)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        rows = _established()
        for worker, pid in production.pids().items():
            inodes = _socket_inodes(pid)
            if any(remote == port and inode in inodes for _, remote, inode in rows):
                return worker
        time.sleep(0.05)
    raise AssertionError(f"no worker is talking to port {port}")


def sockets_on(worker: int) -> int:
    """Connections nginx holds open to a worker: its pages' websockets (nginx keeps no
    idle connections to workers)."""
    return sum(1 for local, _, _ in _established() if local == worker)


@pytest.fixture(scope="module")
def production(fake_server: FakeUpstream) -> Iterator[Production]:
    # PostgreSQL (its own user) and nginx's workers must be able to look inside.
    state = Path(tempfile.mkdtemp(prefix="chatsite-production-"))
    state.chmod(0o755)
    port = free_port()
    env = {
        **os.environ,
        "OPENAI_BASE_URL": fake_server.base_url,
        "OPENAI_API_KEY": API_KEY,
        "OPENAI_MODEL": "fake-model",
        "CHATSITE_HEARTBEAT_INTERVAL": "1",
        "CHATSITE_STALE_AFTER": str(STALE_AFTER),
        "CHATSITE_CHECKPOINT_INTERVAL": "0.3",
    }
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    log = open(state.parent / f"{state.name}.log", "wb")  # noqa: SIM115 - the child's
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts/production.py"), "--state", str(state / "s"),
         "--workers", "2", "--port", str(port), "--ephemeral"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log,
    )  # fmt: skip
    assert process.stdout is not None
    ready = None
    deadline = time.monotonic() + 600  # a brand-new machine installs nginx and PostgreSQL
    while time.monotonic() < deadline:
        line = process.stdout.readline().decode()
        if not line:
            break
        if line.startswith("READY "):
            ready = json.loads(line[6:])
            break
    if ready is None:
        process.kill()
        raise AssertionError(Path(log.name).read_text()[-4000:])
    production = Production(
        ready["url"].rstrip("/"), ready["workers"], Path(ready["state"]), process
    )
    yield production
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()
    subprocess.run(["rm", "-rf", str(state)], check=False)


@pytest.fixture
def upstream(fake_server: FakeUpstream) -> FakeUpstream:
    fake_server.reset()
    return fake_server


def start_answer(page: Page, base: str, upstream: FakeUpstream, pieces: int = 600) -> None:
    upstream.enqueue(Stream([f"w{i} " for i in range(pieces)], interval=0.03))
    page.goto(f"{base}/")
    page.fill("#new-message", f"a long one {time.monotonic()}")
    page.press("#new-message", "Enter")
    page.wait_for_url(f"{base}/conversations/*/")
    expect(page.locator(f"{ANSWER} .message-text").last).to_contain_text("w3 ")


def answer_text(page: Page) -> str:
    return page.locator(f"{ANSWER} .message-text").last.inner_text()


def signed_in(page: Page, production: Production, name: str) -> None:
    sign_up(page, production.url, name)


def test_through_nginx_a_user_streams_stops_from_the_other_worker_reloads_and_searches(
    page: Page, production: Production, upstream: FakeUpstream
) -> None:
    base = production.url
    signed_in(page, production, "ada")  # the first account: the superuser
    start_answer(page, base, upstream)
    writer = worker_talking_to(production, int(upstream.port))
    other = next(w for w in production.workers if w != writer)

    # A second tab whose socket nginx gave to the other worker (round robin: try again
    # until it lands there).
    tab = None
    for _ in range(8):
        tab = page.context.new_page()
        before = sockets_on(other)
        tab.goto(page.url)
        expect(tab.locator(f"{ANSWER} .message-text").last).to_contain_text("w")
        tab.wait_for_function(SETTLED)
        time.sleep(0.3)
        if sockets_on(other) > before:
            break
        tab.close()
        tab = None
    assert tab is not None, "nginx never gave a socket to the other worker"
    expect(tab.locator(f"{ANSWER} .message-text").last).to_contain_text("w20 ")  # live via Redis
    tab.click("#stop-button")
    assert upstream.completions()[0].wait_closed(3.0), "Stop did not reach the writing worker"
    for each in (page, tab):
        expect(each.locator(f'{ANSWER}[data-status="stopped"]')).to_be_visible()
    stopped = answer_text(page)
    assert answer_text(tab) == stopped

    # A reload lands on either worker and shows the same saved answer.
    for _ in range(2):
        page.reload()
        expect(page.locator(f'{ANSWER}[data-status="stopped"]')).to_be_visible()
        assert answer_text(page) == stopped

    # Mid-answer reloads resume the answer, whichever worker serves them.
    start_answer(page, base, upstream, pieces=120)
    page.reload()
    expect(page.locator(f"{ANSWER} .message-text").last).to_contain_text("w60 ")
    page.reload()
    expect(page.locator(f'{ANSWER}[data-status="complete"]').last).to_be_visible(timeout=15_000)
    words = answer_text(page).split()
    assert words == [f"w{i}" for i in range(120)]

    # Search (PostgreSQL's full text) finds it.
    page.goto(f"{base}/search/?q=w119")
    expect(page.locator("main mark").first).to_have_text("w119")

    # The admin, static files from nginx included.
    page.goto(f"{base}/admin/")
    expect(page.locator("#content")).to_contain_text("Conversations")
    css = page.request.get(f"{base}/static/admin/css/base.css")
    assert css.ok
    assert css.headers["server"].startswith("nginx")
    assert "immutable" in css.headers.get("cache-control", "")
    tab.close()


def test_a_worker_killed_mid_answer_leaves_it_interrupted_with_its_text_and_the_page_says_so(
    page: Page, production: Production, upstream: FakeUpstream
) -> None:
    base = production.url
    signed_in(page, production, "bea")
    start_answer(page, base, upstream)
    expect(page.locator(f"{ANSWER} .message-text").last).to_contain_text("w30 ")
    writer = worker_talking_to(production, int(upstream.port))
    shown = answer_text(page)
    os.kill(production.pids()[writer], signal.SIGKILL)
    killed_at = time.monotonic()

    # The surviving worker's supervisor finds the answer's beats stopped, and says so.
    expect(page.locator(f'{ANSWER}[data-status="interrupted"]')).to_be_visible(
        timeout=(STALE_AFTER + 6) * 1000
    )
    assert time.monotonic() - killed_at < STALE_AFTER + 6
    page.reload()
    expect(page.locator(f'{ANSWER}[data-status="interrupted"]')).to_be_visible()
    saved = answer_text(page).split()
    # Up to the last checkpoint: a prefix of the words streamed, most of what was shown.
    assert saved == [f"w{i}" for i in range(len(saved))]
    assert len(saved) >= len(shown.split()) - 15
    assert "interrupted" in page.locator(ANSWER).last.inner_text().lower()


def test_a_rolling_restart_loses_nothing_and_pages_reconnect_by_themselves(
    page: Page, production: Production, upstream: FakeUpstream
) -> None:
    base = production.url
    signed_in(page, production, "cy")
    start_answer(page, base, upstream)
    expect(page.locator(f"{ANSWER} .message-text").last).to_contain_text("w20 ")
    shown_before = answer_text(page).split()

    for worker in production.workers:  # systemctl restart chatsite-worker@PORT, one by one
        pid = production.pids()[worker]
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 40
        while production.pids().get(worker) == pid or not sockets_listening(worker):
            assert time.monotonic() < deadline, f"worker {worker} did not come back"
            time.sleep(0.1)

    # Its worker saved the answer as it stopped (SIGTERM): every word it had, none lost
    # to a checkpoint interval; the page, never reloaded, is told through its new socket.
    expect(page.locator(f'{ANSWER}[data-status="interrupted"]').last).to_be_visible(timeout=20_000)
    final = answer_text(page).split()
    assert final == [f"w{i}" for i in range(len(final))]
    assert len(final) >= len(shown_before)

    # Still the same page: it reconnected by itself and sends and streams again.
    page.wait_for_function(SETTLED)
    upstream.enqueue(Stream(["after ", "the ", "restart."]))
    page.fill("#composer-input", "still there?")
    page.press("#composer-input", "Enter")
    expect(page.locator(f'{ANSWER}[data-status="complete"]').last).to_contain_text(
        "after the restart."
    )
    page.reload()  # and the database holds what the page showed
    expect(page.locator(f"{ANSWER} .message-text").first).to_have_text(" ".join(final))


def sockets_listening(port: int) -> bool:
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                return True
    return False


def test_the_unit_files_and_the_site_file_are_what_the_profile_ran(production: Production) -> None:
    """The profile ran deploy/'s files (paths aside): the workers' command lines are the
    unit's ExecStart, and nginx's site is deploy/nginx/chatsite.conf."""
    unit = (ROOT / "deploy/systemd/chatsite-worker@.service").read_text()
    exec_start = re.search(r"^ExecStart=(.+)$", unit, re.MULTILINE)
    assert exec_start is not None
    expected = exec_start.group(1).replace("/srv/chatsite", str(ROOT))
    for port, pid in production.pids().items():
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1]
        assert " ".join(c.decode() for c in command) == expected.replace("%i", str(port))
    site = (production.state / "nginx/chatsite.conf").read_text()
    original = (ROOT / "deploy/nginx/chatsite.conf").read_text()
    directives = (
        "proxy_read_timeout 3600s;",
        "proxy_set_header Upgrade $http_upgrade;",
        "proxy_set_header X-Forwarded-Proto $scheme;",
        "proxy_buffering off;",
    )
    for directive in directives:
        assert directive in original
        assert directive in site
