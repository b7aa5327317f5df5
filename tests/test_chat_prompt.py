"""Chat prompt rendering for models with and without a template."""

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
