"""Chat formats against the exact strings in docs/protocols.md ("Chat formats")."""

from chatbot.services.prompts import alternate, format_prompt, hub_model_id, strip_stops

CONVERSATION = [
    {"role": "user", "content": "Hello"},
    {"role": "assistant", "content": "Hi there"},
    {"role": "user", "content": "Next"},
]


def test_gemma():
    prompt = format_prompt("google/gemma-7b-it", CONVERSATION)
    assert prompt.text == (
        "<bos><start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\nHi there<end_of_turn>\n"
        "<start_of_turn>user\nNext<end_of_turn>\n<start_of_turn>model\n"
    )
    assert prompt.stop == ("<end_of_turn>",)


def test_gemma_folds_the_system_prompt_into_the_first_user_turn():
    prompt = format_prompt("google/gemma-7b-it", [{"role": "system", "content": "Be brief."}, *CONVERSATION[:1]])
    assert prompt.text == "<bos><start_of_turn>user\nBe brief.\n\nHello<end_of_turn>\n<start_of_turn>model\n"


def test_llama_2_chat():
    turns = [{"role": "system", "content": "Be brief."}, *CONVERSATION]
    prompt = format_prompt("meta-llama/Llama-2-7b-chat-hf", turns)
    assert prompt.text == (
        "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHello [/INST] Hi there </s><s>[INST] Next [/INST]"
    )


def test_mistral_instruct():
    prompt = format_prompt("mistralai/Mistral-7B-Instruct-v0.2", CONVERSATION)
    assert prompt.text == "<s>[INST] Hello [/INST]Hi there</s>[INST] Next [/INST]"


def test_falcon_instruct():
    turns = [{"role": "system", "content": "Be brief."}, *CONVERSATION]
    prompt = format_prompt("tiiuae/falcon-7b-instruct", turns)
    assert prompt.text == "Be brief.\nUser: Hello\nAssistant: Hi there\nUser: Next\nAssistant:"
    assert prompt.stop == ("\nUser:",)


def test_any_other_model_gets_the_plain_transcript():
    prompt = format_prompt("bigscience/bloom", CONVERSATION[:1])
    assert prompt.text == "User: Hello\nAssistant:"


def test_short_ids_resolve_to_hub_ids():
    assert hub_model_id("meta-llama/llama-2-7b-chat") == "meta-llama/Llama-2-7b-chat-hf"
    assert hub_model_id("mistralai/mistral-7b-instruct") == "mistralai/Mistral-7B-Instruct-v0.2"
    assert hub_model_id("google/gemma-7b-it") == "google/gemma-7b-it"
    assert format_prompt("meta-llama/llama-2-7b-chat", CONVERSATION[:1]).text == "<s>[INST] Hello [/INST]"


def test_roles_alternate_after_a_failed_answer():
    """Two user messages in a row (the first got no answer) become one turn."""
    system, turns = alternate(
        [
            {"role": "assistant", "content": "orphan"},
            {"role": "user", "content": "one"},
            {"role": "user", "content": "two"},
        ]
    )
    assert system == ""
    assert turns == [{"role": "user", "content": "one\n\ntwo"}]


def test_stop_sequences_left_in_an_answer_are_cut():
    assert strip_stops("Paris.\nUser: and", ("\nUser:",)) == "Paris."
    assert strip_stops("Use <s> for strikethrough", ("\nUser:",)) == "Use <s> for strikethrough"
