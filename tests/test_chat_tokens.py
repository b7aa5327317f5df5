"""Chats in the worker, over the real batched engine and tiny GGUFs with chat templates: one BOS
whoever writes it, no `max_tokens` meaning the context, and tool choices whose grammars
llama.cpp takes (a required call always parses)."""

import asyncio
import json

import pytest

from rbee.testing.chat_templates import GEMMA_STYLE, HERMES_STYLE
from rbee.testing.tiny_model import BOS_ID, build_tiny_gguf
from rbee.worker.batch_engine import BatchEngine
from rbee.worker.faults import Faults
from rbee.worker.generation import LoadSpec
from rbee.worker.inference import InferenceService
from rbee.worker.slots import SlotPool

CTX = 512
CHAT = [{"role": "user", "content": "hello"}]


def _engine(tmp_path_factory, template: str) -> BatchEngine:
    path = build_tiny_gguf(tmp_path_factory.mktemp("model") / "tiny.gguf", chat_template=template)
    return asyncio.run(BatchEngine.load(LoadSpec(str(path), 1, CTX, 1), Faults(), lambda _: None))


@pytest.fixture(scope="module")
def gemma_style(tmp_path_factory):
    engine = _engine(tmp_path_factory, GEMMA_STYLE)
    yield engine
    engine.shutdown()


@pytest.fixture(scope="module")
def hermes_style(tmp_path_factory):
    engine = _engine(tmp_path_factory, HERMES_STYLE)
    yield engine
    engine.shutdown()


def _run(engine: BatchEngine, body: dict, max_output_tokens: int = 0) -> tuple[list[int], list]:
    async def scenario():
        svc = InferenceService("w-test", SlotPool.of_size(1), engine, max_output_tokens)
        task = svc.admit(body)
        return task.prompt_tokens, [event async for event in svc.stream(task)]

    return asyncio.run(asyncio.wait_for(scenario(), 60))


def test_a_template_that_writes_bos_itself_gets_no_second_one(gemma_style):
    tokens, _ = _run(gemma_style, {"messages": CHAT, "max_tokens": 1})
    assert tokens[0] == BOS_ID and tokens.count(BOS_ID) == 1


def test_a_template_without_bos_gets_the_one_the_tokenizer_adds(hermes_style):
    tokens, _ = _run(hermes_style, {"messages": CHAT, "max_tokens": 1})
    assert tokens[0] == BOS_ID and tokens.count(BOS_ID) == 1


def test_without_max_tokens_a_generation_runs_until_the_context_is_full(hermes_style):
    tokens, events = _run(hermes_style, {"messages": CHAT, "ignore_eos": True})
    end = events[-1]
    assert end.TYPE == "end" and end.stop_reason == "max_tokens"
    assert end.tokens_out == CTX - len(tokens) and end.tokens_out > 128


def test_the_server_cap_bounds_a_generation_without_max_tokens(hermes_style):
    _, events = _run(hermes_style, {"messages": CHAT, "ignore_eos": True}, max_output_tokens=40)
    assert (events[-1].tokens_out, events[-1].stop_reason) == (40, "max_tokens")


TOOLS = [{"type": "function", "function": {"name": "pick", "parameters": {
    "type": "object", "properties": {"color": {"enum": ["red", "blue"]}}, "required": ["color"]}}}]


def test_a_required_call_from_the_engine_is_a_tool_call_event_that_parses(hermes_style):
    _, events = _run(hermes_style, {"messages": CHAT, "tools": TOOLS, "tool_choice": "required",
                                    "parallel_tool_calls": False})
    calls = [event for event in events if event.TYPE == "tool_call"]
    assert len(calls) == 1 and calls[0].name == "pick", events
    assert json.loads(calls[0].arguments)["color"] in {"red", "blue"}
    assert [event.TYPE for event in events] == ["started", "tool_call", "end"]
    assert events[-1].stop_reason == "eos"


def test_an_auto_choice_runs_under_a_lazy_grammar_llama_cpp_accepts(hermes_style):
    _, events = _run(hermes_style, {"messages": CHAT, "tools": TOOLS, "max_tokens": 24})
    assert events[-1].TYPE == "end", events
