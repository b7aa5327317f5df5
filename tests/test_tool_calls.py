"""Tool calls in the worker: the grammar built from the offered functions, and the splitting of
an output into content and parsed calls."""

import json

import pytest

from rbee.common import wire
from rbee.common.errors import ApiError
from rbee.common.wire_requests import ChatInference
from rbee.common.wire_tools import FunctionSpec
from rbee.worker.tool_choice import grammar_of
from rbee.worker.tool_grammar import CALL_TRIGGER, call_schema, tool_grammar
from rbee.worker.tool_parser import ToolCallSplitter

WEATHER = {"type": "object", "properties": {"city": {"type": "string", "enum": ["Paris", "Oslo"]}},
           "required": ["city"]}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}},
         {"type": "function", "function": {"name": "get_time"}}]
NAMES = frozenset({"get_weather", "get_time"})


def _chat(**fields) -> ChatInference:
    return ChatInference.parse({"messages": [{"role": "user", "content": "Hi"}], "tools": TOOLS, **fields})


def _llama_accepts(gbnf: str) -> bool:
    from llama_cpp.llama_grammar import LlamaGrammar

    return LlamaGrammar.from_string(gbnf, verbose=False) is not None


def test_the_call_schema_names_each_function_with_its_own_arguments():
    functions = [FunctionSpec(name="get_weather", parameters=WEATHER), FunctionSpec(name="get_time")]
    schema = call_schema(functions)
    names = [alternative["properties"]["name"] for alternative in schema["anyOf"]]
    assert names == [{"const": "get_weather"}, {"const": "get_time"}]
    assert schema["anyOf"][0]["properties"]["arguments"] == WEATHER
    assert schema["anyOf"][1]["properties"]["arguments"] == {"type": "object"}


@pytest.mark.parametrize("parallel", [False, True])
def test_the_tool_grammar_is_gbnf_that_llama_cpp_parses_with_the_tags_in_its_root(parallel):
    gbnf = tool_grammar([FunctionSpec(name="get_weather", parameters=WEATHER)], parallel)
    root = next(line for line in gbnf.splitlines() if line.startswith("root ::= "))
    assert "rbee-tagged" in root and ("{0," in root) == parallel
    assert '"<tool_call>\\n"' in gbnf and '"\\n</tool_call>"' in gbnf
    assert _llama_accepts(gbnf)


def test_a_required_choice_constrains_from_the_first_token_and_auto_from_the_opening_tag():
    required, auto, none = (grammar_of(_chat(tool_choice=choice)) for choice in ("required", "auto", "none"))
    assert required.gbnf and required.triggers == ()
    assert auto.gbnf and auto.triggers == (CALL_TRIGGER,)
    assert none.gbnf is None


def test_a_named_choice_allows_only_that_function():
    named = grammar_of(_chat(tool_choice={"type": "function", "function": {"name": "get_time"}}))
    assert '"\\"get_time\\""' in named.gbnf and "get_weather" not in named.gbnf


def test_the_lazy_trigger_matches_text_that_reached_the_opening_tag():
    import re

    assert re.fullmatch(CALL_TRIGGER, "Let me look.\n<tool_call>\n{").group(1) == "<tool_call>"
    assert re.fullmatch(CALL_TRIGGER, "Let me look. <tool") is None


def test_a_schema_the_converter_cannot_take_is_a_400_naming_the_parameters():
    with pytest.raises(ApiError) as caught:
        tool_grammar([FunctionSpec(name="f", parameters={"$ref": "https://example.com/schema.json"})], False)
    assert (caught.value.status, caught.value.details) == (400, {"field": "tools.function.parameters"})


def _split(*texts: str) -> list:
    splitter = ToolCallSplitter(NAMES)
    pieces = [piece for text in texts for piece in splitter.feed(text)]
    return pieces + splitter.flush()


def test_a_tagged_call_fed_in_fragments_becomes_one_call_with_json_arguments():
    pieces = _split("<tool", "_call>\n{\"name\": \"get_weather\", ",
                    "\"arguments\": {\"city\": \"Oslo\"}}\n</tool_", "call>")
    assert len(pieces) == 1 and isinstance(pieces[0], wire.ToolCall)
    call = pieces[0]
    assert (call.index, call.name, json.loads(call.arguments)) == (0, "get_weather", {"city": "Oslo"})
    assert call.id.startswith("call_")


def test_text_before_a_call_is_content_and_blank_text_after_it_is_not():
    pieces = _split("Let me check. <tool_call>{\"name\": \"get_time\", \"arguments\": {}}</tool_call>\n ")
    assert pieces[0] == "Let me check. " and isinstance(pieces[1], wire.ToolCall) and len(pieces) == 2


def test_parallel_calls_are_numbered_in_order_with_distinct_ids():
    call = "<tool_call>{\"name\": \"get_time\", \"arguments\": {}}</tool_call>"
    pieces = _split(call + "\n" + call)
    assert [piece.index for piece in pieces] == [0, 1] and pieces[0].id != pieces[1].id


def test_a_call_of_an_unknown_function_or_broken_json_stays_content():
    for body in ("{\"name\": \"rm_rf\", \"arguments\": {}}", "{\"name\": \"get_time\", "):
        text = f"<tool_call>{body}</tool_call>"
        assert "".join(_split(text)) == text


def test_an_unclosed_call_at_the_end_of_the_output_is_parsed():
    pieces = _split("<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}")
    assert isinstance(pieces[0], wire.ToolCall) and pieces[0].name == "get_time"


def test_text_that_only_looks_like_the_start_of_a_tag_is_released_as_content():
    assert "".join(_split("a <b> <to", "ol> c")) == "a <b> <tool> c"


def test_arguments_given_as_a_json_string_are_read_as_the_object():
    arguments = json.dumps(json.dumps({"tz": "UTC"}))
    pieces = _split(f"<tool_call>{{\"name\": \"get_time\", \"arguments\": {arguments}}}</tool_call>")
    assert json.loads(pieces[0].arguments) == {"tz": "UTC"}
