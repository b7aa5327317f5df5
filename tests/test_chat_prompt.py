"""Chat prompt rendering for models with and without a template."""

import pytest

from rbee.common.errors import ApiError
from rbee.testing.chat_templates import GEMMA_STYLE, HERMES_STYLE, PLAIN_STYLE
from rbee.worker.chat_prompt import render_chat


def test_models_without_a_template_get_a_plain_transcript_ending_in_the_assistant_turn():
    prompt = render_chat(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": " Hi "}],
        template=None, bos="<s>", eos="</s>",
    )
    assert prompt.text == "System: Be brief.\nUser: Hi\nAssistant:"
    assert "\nUser:" in prompt.stops
    assert not prompt.parse_special


def test_a_jinja_template_from_the_model_is_applied():
    template = "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}<assistant>"
    prompt = render_chat([{"role": "user", "content": "Hi"}], template, "<s>", "</s>")
    assert prompt.text == "<user>Hi<assistant>"
    assert prompt.parse_special


TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                                           "parameters": {"type": "object"}}}]
CALLED = {"role": "assistant", "content": "",
          "tool_calls": [{"id": "call_1", "type": "function",
                          "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}]}
ANSWERED = {"role": "tool", "content": "12 C", "tool_call_id": "call_1"}


def test_a_template_that_knows_tools_gets_them_and_renders_calls_and_results_of_the_history():
    messages = [{"role": "user", "content": "Weather in Oslo?"}, CALLED, ANSWERED]
    prompt = render_chat(messages, HERMES_STYLE, "<s>", "</s>", TOOLS)
    assert "<tools>" in prompt.text and '"name": "get_weather"' in prompt.text
    assert '"arguments": {"city": "Oslo"}' in prompt.text and "<tool_response>\n12 C" in prompt.text
    assert "You may call functions" not in prompt.text


def test_a_template_that_ignores_tools_gets_them_in_a_system_message():
    prompt = render_chat([{"role": "user", "content": "Hi"}], PLAIN_STYLE, "<s>", "</s>", TOOLS)
    assert prompt.text.startswith("<|system|>You may call functions") and "get_weather" in prompt.text


def test_the_plain_fallback_renders_tools_calls_and_results():
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Weather?"},
                CALLED, ANSWERED]
    prompt = render_chat(messages, None, "<s>", "</s>", TOOLS)
    lines = prompt.text.split("\n")
    assert lines[0] == "System: Be brief." and "get_weather" in prompt.text
    call = '{"name": "get_weather", "arguments": {"city": "Oslo"}}'
    assert f"Assistant: <tool_call>\n{call}\n</tool_call>" in prompt.text
    assert "Tool (call_1): 12 C\nAssistant:" in prompt.text


def test_a_template_that_raises_is_a_400_with_the_templates_own_message():
    messages = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    with pytest.raises(ApiError) as caught:
        render_chat(messages, GEMMA_STYLE, "<s>", "</s>")
    assert (caught.value.status, caught.value.code) == (400, "CHAT_TEMPLATE_ERROR")
    assert "Conversation roles must alternate" in caught.value.message


def test_a_template_with_a_jinja_error_is_a_400_too():
    with pytest.raises(ApiError) as caught:
        render_chat([{"role": "user", "content": "a"}], "{{ messages[0].content | nosuchfilter }}",
                    "<s>", "</s>")
    assert caught.value.code == "CHAT_TEMPLATE_ERROR"
