"""Accounts in a real browser, on two instances sharing one Redis or one PostgreSQL: sign up, approve, the same
chats on two browsers, none for another account, a limit reached and shown, a disabled account's open chat
closed."""

import os

import pytest
import redis
from playwright.sync_api import expect

from chatbot.stores.conversations import new_id
from tests import postgres
from tests.conftest import app_environment
from tests.fakes.hf_server import TOKEN
from tests.helpers import PASSWORD
from tests.servers import GunicornApp


@pytest.fixture(params=["redis", "postgres"])
def shared_store(request):
    """The store two instances share: the test's own Redis database, or a schema of its own in the test's
    PostgreSQL database; its URL."""
    if request.param == "postgres":
        database = request.getfixturevalue("postgres_database")
        with postgres.new_schema(f"accounts_{new_id().lower().replace('-', '_')}", database) as url:
            yield url
        return
    url = f"redis://127.0.0.1:6379/{os.environ.get('TEST_REDIS_ACCOUNTS_DB', '11')}"
    with redis.Redis.from_url(url) as client:
        client.flushdb()
    yield url


@pytest.fixture
def two_instances_with_accounts(tmp_path, fake, shared_store):
    environment = app_environment(
        tmp_path, API_URL=fake.task_url(), HF_API_TOKEN=TOKEN, CHAT_STORE_URL=shared_store, AUTH="local"
    )
    with GunicornApp(environment, workers=2) as first, GunicornApp(environment, workers=2) as second:
        yield first.url, second.url


def person(browser):
    """A browser of its own (its own cookies), with a page."""
    return browser.new_context().new_page()


def sign_up(page, url, name):
    fill_in_and_submit(page, url + "/sign-up", name)


def sign_in(page, url, name):
    fill_in_and_submit(page, url + "/sign-in", name)


def fill_in_and_submit(page, form_url, name):
    """Fill in the form with `name` and the password, submit it, and wait for the page it leads to (with its
    script: a key pressed before it runs would not send)."""
    page.goto(form_url)
    page.fill("#username", name)
    page.fill("#password", PASSWORD)
    with page.expect_navigation():
        page.click("button[type=submit]")


def send(page, fake, text, tokens):
    fake.reply(tokens=tokens)
    page.fill("#message-input", text)
    page.keyboard.press("Enter")


def test_accounts_across_browsers_and_instances(browser, two_instances_with_accounts, fake):
    first, second = two_instances_with_accounts
    ada, bob_laptop, bob_phone = person(browser), person(browser), person(browser)

    sign_up(ada, first, "ada")
    expect(ada.locator(".account")).to_contain_text("Signed in as ada")
    sign_up(bob_laptop, second, "bob")
    expect(bob_laptop.locator(".notice")).to_contain_text("waits for an admin's approval")

    ada.goto(first + "/admin/")
    ada.locator("#account-bob button[value=approve]").click()
    expect(ada.locator("#account-bob")).to_contain_text("active")

    sign_in(bob_laptop, second, "bob")
    send(bob_laptop, fake, "Plan a trip to Porto", ["Take", " the", " train"])
    expect(bob_laptop.locator(".message.assistant.done .body")).to_have_text("Take the train")
    expect(bob_laptop.locator("#left")).to_contain_text(
        "99,996 of 100,000 tokens left today"
    )  # updated as the answer ends

    sign_in(bob_phone, first, "bob")  # another browser, the other instance: the same chats
    expect(bob_phone.locator(".conversation-list")).to_contain_text("Plan a trip to Porto")
    expect(bob_phone.locator(".message.assistant.done .body")).to_have_text("Take the train")
    bobs_chat = bob_phone.url

    ada.goto(first + "/")
    expect(ada.locator(".conversation-list")).not_to_contain_text("Porto")
    assert ada.goto(bobs_chat).status == 404

    ada.goto(first + "/admin/")
    ada.fill("#messages-per-minute", "1")
    ada.click("text=Save")
    bob_phone.goto(bobs_chat)
    answers = bob_phone.locator(".message.assistant.done")
    for turn in range(3):  # a minute may have begun since bob's first message: then the second one is refused
        send(bob_phone, fake, "And back?", ["Later"])
        refused = bob_phone.locator("#notice", has_text="Your account has asked for 1 answer this minute")
        expect(refused.or_(answers.nth(turn + 1))).to_be_visible()
        if refused.is_visible():
            break
    expect(refused).to_be_visible()
    expect(bob_phone.locator("#message-input")).to_have_value("And back?")  # nothing lost

    bob_laptop.reload()  # an open chat on the other instance
    ada.goto(first + "/admin/")
    ada.locator("#account-bob button[value=disable]").click()
    expect(bob_laptop.locator("#notice")).to_contain_text("You were signed out", timeout=10_000)
    bob_laptop.reload()
    expect(bob_laptop.locator("h1")).to_have_text("Sign in")
