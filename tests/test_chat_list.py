"""The sidebar's chat list: grouped by the day of each chat's last activity, at day boundaries and in the timezone
of "now"; and the empty chat that New chat goes back to."""

from datetime import UTC, datetime, timedelta, timezone

from chatbot.chat.chat_list import empty_chat, grouped, heading_for
from chatbot.stores.conversations import Conversation, Message, new_id
from chatbot.stores.memory import MemoryStore

UTC_PLUS_ONE = timezone(timedelta(hours=1))
NOW = datetime(2026, 3, 10, 0, 30, tzinfo=UTC_PLUS_ONE)  # half an hour into a day


def chat(title: str, at: datetime) -> Conversation:
    return Conversation(id=new_id(), owner="me", title=title, updated_at=at.timestamp())


def headings(conversations: list[Conversation], now: datetime = NOW) -> list[tuple[str, list[str]]]:
    return [(group.heading, [c.title for c in group.conversations]) for group in grouped(conversations, now)]


def test_a_chat_goes_under_today_yesterday_the_previous_seven_days_or_older():
    today = NOW.date()
    assert [heading_for(today - timedelta(days=n), today) for n in (0, 1, 2, 7, 8, 400)] == [
        "Today",
        "Yesterday",
        "Previous 7 days",
        "Previous 7 days",
        "Older",
        "Older",
    ]


def test_the_day_changes_at_midnight_in_the_timezone_of_now():
    midnight = NOW.replace(hour=0, minute=0)
    listed = [
        chat("just after midnight", midnight + timedelta(seconds=1)),
        chat("just before midnight", midnight - timedelta(seconds=1)),
        chat("a week ago at midnight", midnight - timedelta(days=6)),
        chat("a second before that", midnight - timedelta(days=6, seconds=1)),
        chat("eight days ago", midnight - timedelta(days=7, seconds=1)),
    ]
    assert headings(listed) == [
        ("Today", ["just after midnight"]),
        ("Yesterday", ["just before midnight"]),
        ("Previous 7 days", ["a week ago at midnight", "a second before that"]),
        ("Older", ["eight days ago"]),
    ]
    # The same instants in UTC, where it is still 23:30 the day before: both on that day, today there.
    in_utc = NOW.astimezone(UTC)
    assert headings(listed[:2], in_utc) == [("Today", ["just after midnight", "just before midnight"])]


def test_empty_groups_are_left_out_and_each_keeps_the_order_given():
    listed = [chat("newer", NOW - timedelta(days=30)), chat("older", NOW - timedelta(days=90))]
    assert headings(listed) == [("Older", ["newer", "older"])]
    assert headings([]) == []


def test_a_clock_ahead_of_the_server_counts_as_today():
    assert headings([chat("from the future", NOW + timedelta(days=2))]) == [("Today", ["from the future"])]


def test_the_empty_chat_is_the_newest_untitled_one_with_no_message():
    store = MemoryStore()
    assert empty_chat(store, "me") is None
    used = store.create_conversation("me")
    store.add_message(Message(new_id(), used.id, "user", "New chat"))  # titled so by its first message, and not empty
    renamed = store.create_conversation("me", title="Ideas for later")
    assert empty_chat(store, "me") is None
    empty = store.create_conversation("me")
    assert empty_chat(store, "me").id == empty.id
    assert empty_chat(store, "someone else") is None
    assert renamed.id != empty.id
