"""In the browser: a report reaches the moderators' queue, a connected user is suspended,
and the composer shows a quota running low."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import API_KEY, ask, sign_up
from tests.fake_openai import FakeUpstream, Stream
from tests.live import live_site

pytestmark = pytest.mark.browser

ANSWER = '#messages [data-role="assistant"]'


@pytest.fixture
def quota_site(fake_server: FakeUpstream, tmp_path: Path) -> Iterator[str]:
    fake_server.reset()
    env = {
        "OPENAI_BASE_URL": fake_server.base_url,
        "OPENAI_API_KEY": API_KEY,
        "OPENAI_MODEL": "fake-model",
        "CHATSITE_QUOTA_MESSAGES_PER_DAY": "3",
        "CHATSITE_QUOTA_WARN_BELOW": "0.5",  # 1 of 3 left is "low"; 2 of 3 is not
    }
    with live_site(tmp_path, env) as base:
        yield base
    fake_server.reset()


def test_a_report_reaches_the_queue_and_a_suspended_user_is_cut_off_live(
    browser: Browser, site: str, fake_server: FakeUpstream
) -> None:
    operator = browser.new_context().new_page()
    sign_up(operator, site, "operator")  # the first account: superuser
    user = browser.new_context().new_page()
    fake_server.enqueue(Stream(["The moon is made of cheese."]))
    sign_up(user, site, "mallory")
    ask(user, site, "what is the moon made of?")

    user.click(f"{ANSWER} [data-action=report]")
    dialog = user.locator("#report-dialog")
    expect(dialog).to_be_visible()
    dialog.locator("select").select_option("misinformation")
    dialog.locator("textarea").fill("it is rock")
    dialog.locator("button[type=submit]").click()
    expect(dialog.locator(".report-result")).to_contain_text("moderators will look")
    # The dialog closes by itself after thanking, and forgets what was typed.
    expect(dialog).to_be_hidden()
    assert dialog.locator("textarea").input_value() == ""
    expect(user.locator("#composer-feedback")).to_contain_text("moderators will look")

    operator.goto(f"{site}/admin/moderation/flag/")
    row = operator.locator("#result_list tbody tr").first
    expect(row).to_contain_text("misinformation")
    expect(row).to_contain_text("mallory")
    row.locator("th a, td a").first.click()
    expect(operator.locator(".flag-turn--flagged")).to_contain_text("made of cheese")

    # Suspend mallory while her page is open: it says so at once and stops updating.
    operator.goto(f"{site}/admin/accounts/suspension/add/")
    operator.fill("#id_user", "2")  # mallory, the second account of this fresh site
    operator.fill("#id_reason", "Spreading cheese theories.")
    operator.click("input[name=_save]")
    expect(operator.locator(".messagelist")).to_contain_text("was added successfully")
    expect(user.locator("#composer-feedback")).to_contain_text("suspended", timeout=5000)
    user.reload()
    expect(user.locator("[role=alert]")).to_contain_text("Spreading cheese theories.")


def test_the_composer_shows_the_quota_running_low_and_refuses_past_it(
    page: Page, quota_site: str, fake_server: FakeUpstream
) -> None:
    fake_server.enqueue(Stream(["one"]), Stream(["two"]), Stream(["three"]))
    sign_up(page, quota_site)
    ask(page, quota_site, "first")
    expect(page.locator("#quota-notice")).to_have_text("")
    page.fill("#composer-input", "second")
    page.press("#composer-input", "Enter")
    expect(page.locator(f'{ANSWER}[data-status="complete"]')).to_have_count(2)
    expect(page.locator("#quota-notice")).to_have_text("1 message left today")
    page.fill("#composer-input", "third")
    page.press("#composer-input", "Enter")
    expect(page.locator(f'{ANSWER}[data-status="complete"]')).to_have_count(3)
    page.fill("#composer-input", "fourth")
    page.press("#composer-input", "Enter")
    expect(page.locator("#composer-feedback")).to_contain_text("your 3 messages today")
    expect(page.locator("#composer-input")).to_have_value("fourth")  # the draft is kept
    assert len(fake_server.completions()) == 3
