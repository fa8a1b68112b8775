"""The replies a chat asks for: an answer to a new or edited message, another answer to the same question, and
more of an answer cut off at the length limit.

They take everything as arguments, so a socket, a form post or a test can run them alike; they report to a
listener with `Event`s and never raise for a failed answer: the failure is stored with the message and reported.
One answer at a time per conversation: starting one while another is written raises AnswerRunning. Nothing is
thrown away: an edit or a regeneration starts a branch beside what was there (chatbot/chat/branches.py), and the
model sees that branch alone.
"""

from __future__ import annotations

import threading

from chatbot.chat import attachments, titles
from chatbot.chat.answer_writer import AnswerWriter
from chatbot.chat.branches import Tree
from chatbot.chat.events import Event, Kind, Listener
from chatbot.chat.reply_settings import ReplySettings
from chatbot.chat.running import start_answer
from chatbot.stores.conversations import Conversation, Message, Store, new_id


def run_reply(
    store: Store,
    conversation: Conversation,
    text: str,
    settings: ReplySettings,
    listener: Listener,
    cancel: threading.Event | None = None,
    after: str | None = None,
    replacing: str | None = None,
    files: list[dict] | None = None,
) -> Message:
    """Answer `text`: a new message after `after` (the last message the tab shows), or the edited text of the
    user's message `replacing`, saved beside it as an alternative (nothing is thrown away), with `files` attached
    (as stored; an edited message keeps its own). The message is saved before anything is sent; the first one
    titles the chat. Returns the stored answer, whatever happened; AnswerRunning when the conversation is being
    answered already."""
    tree = Tree(store.messages(conversation))
    edited = tree.by_id.get(replacing or "")
    follows = tree.by_id.get(edited.parent_id or "") if edited else _shown_last(tree, conversation, after)
    user_message = Message(new_id(), conversation.id, "user", text, parent_id=follows.id if follows else None)
    if files:
        user_message.meta["attachments"] = [attachments.listed(info) for info in files]
    elif edited and edited.meta.get("attachments"):
        user_message.meta["attachments"] = edited.meta["attachments"]
    answer = start_answer(store, conversation, [user_message, _new_answer(conversation, settings, user_message)])
    first_title = titles.title_from(attachments.in_words(user_message))  # saved alone, and only over "New chat"
    if conversation.title == titles.UNTITLED and store.replace_title(conversation, titles.UNTITLED, first_title):
        conversation.title = first_title
    new_branch = edited is not None or (bool(tree.messages) and after not in tree.by_id)
    shown_anew = Tree([*tree.messages, user_message, answer]) if new_branch else None
    listener(Event(Kind.STARTED, answer, user_message=user_message, tree=shown_anew))
    history = [*(tree.path_to(follows.id) if follows else []), user_message]  # nothing is inserted above it
    return AnswerWriter(store, conversation, settings, listener, cancel).write(answer, history)


def run_regeneration(
    store: Store,
    conversation: Conversation,
    settings: ReplySettings,
    listener: Listener,
    cancel: threading.Event | None = None,
    of: str | None = None,
) -> Message | None:
    """Answer again the question of the answer `of` (the last one the tab shows), beside it as an alternative;
    None when there is no question yet."""
    tree = Tree(store.messages(conversation))
    shown = _shown_last(tree, conversation, of)
    question = tree.by_id.get(shown.parent_id or "") if shown and shown.role == "assistant" else shown
    if question is None or question.role != "user":
        return None
    answer = start_answer(store, conversation, [_new_answer(conversation, settings, question)])
    listener(Event(Kind.STARTED, answer, tree=Tree([*tree.messages, answer])))
    return AnswerWriter(store, conversation, settings, listener, cancel).write(answer, tree.path_to(question.id))


def run_continuation(
    store: Store,
    conversation: Conversation,
    settings: ReplySettings,
    listener: Listener,
    cancel: threading.Event | None = None,
    of: str | None = None,
) -> Message | None:
    """Go on with the answer `of` (the last one the tab shows), which stopped at the length limit; None when
    there is none to go on with."""
    tree = Tree(store.messages(conversation))
    answer = _to_continue(tree, conversation, of)
    if answer is None:
        return None
    answer.status, answer.html = "streaming", ""
    answer.meta.pop("finish_reason", None)
    start_answer(store, conversation, [answer])
    listener(Event(Kind.RESUMED, answer))
    return AnswerWriter(store, conversation, settings, listener, cancel).write(answer, tree.path_to(answer.id)[:-1])


def answer_to_continue(store: Store, conversation: Conversation, of: str | None = None) -> Message | None:
    """The last answer shown (`of`, else the chosen branch's), if it stopped at the length limit and can be
    continued."""
    return _to_continue(Tree(store.messages(conversation)), conversation, of)


def _new_answer(conversation: Conversation, settings: ReplySettings, question: Message) -> Message:
    meta = {"model": settings.model_name or settings.backend.model_id}
    return Message(new_id(), conversation.id, "assistant", "", status="streaming", meta=meta, parent_id=question.id)


def _shown_last(tree: Tree, conversation: Conversation, message_id: str | None) -> Message | None:
    """The last message a tab shows (`message_id`, sent with its action), else that of the chosen branch."""
    if message_id in tree.by_id:
        return tree.by_id[message_id]
    chosen = tree.chosen(conversation.leaf_id)
    return chosen[-1] if chosen else None


def _to_continue(tree: Tree, conversation: Conversation, of: str | None) -> Message | None:
    last = _shown_last(tree, conversation, of)
    if last and last.role == "assistant" and last.status == "done" and last.meta.get("finish_reason") == "length":
        return last
    return None
