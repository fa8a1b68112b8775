"""Inline <think> tags, split off however the stream cuts them, and the markers of a stored answer."""

from chatbot.chat import reasoning
from chatbot.services.protocols import Finish, Reasoning, Text
from chatbot.services.thinking import TagSplitter, split_inline
from chatbot.stores.conversations import Message


def test_tags_cut_between_pieces_are_found():
    splitter = TagSplitter()
    found = [part for piece in ("<thi", "nk>Let me", " see</th", "ink>Four.", "<") for part in splitter.feed(piece)]
    found += splitter.flush()
    assert found == [(True, "Let me"), (True, " see"), (False, "Four."), (False, "<")]


def test_inline_thinking_becomes_reasoning_and_the_rest_stays_text():
    chunks = [Text("<think>"), Text("2+2"), Text("</think>"), Text("It is 4."), Finish("stop")]
    assert list(split_inline(iter(chunks))) == [Reasoning("2+2"), Text("It is 4."), Finish("stop")]


def test_each_token_is_counted_once_however_the_tags_split_the_pieces():
    chunks = [Text("<thi", 3), Text("nk>2+2</think>It is", 4), Text(" 4.<", 2), Finish("stop")]
    split = list(split_inline(iter(chunks)))
    assert split == [Reasoning("2+2"), Text("It is"), Text(" 4."), Text("<"), Finish("stop")]
    assert sum(chunk.tokens for chunk in split if isinstance(chunk, Text | Reasoning)) == 9


def test_text_that_only_looks_like_a_tag_is_kept():
    assert list(split_inline(iter([Text("a <b> c <thin"), Text("g>")]))) == [Text("a <b> c "), Text("<thing>")]


def test_a_stored_answer_gives_up_its_reasoning_when_it_ends():
    message = Message("m", "c", "assistant", f"{reasoning.START}Hmm, 2+2.{reasoning.END}It is 4.")
    assert reasoning.split(message.content) == ("Hmm, 2+2.", "It is 4.")
    reasoning.settle(message)
    assert message.content == "It is 4." and message.meta["reasoning"] == "Hmm, 2+2."


def test_how_long_it_thought_in_words():
    assert reasoning.thought_for(None) == "Reasoning"
    assert reasoning.thought_for(0.3) == "Thought for a moment"
    assert reasoning.thought_for(12.6) == "Thought for 13 s"
