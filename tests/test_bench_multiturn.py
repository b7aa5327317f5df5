"""The multi-turn bench: conversations that resend their whole history each turn, the answers
appended as clients do; a smoke run on the tiny model through a real queen."""

import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import multiturn  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def test_each_turn_resends_the_history_with_the_answers_as_a_transcript():
    history = [{"role": "user", "content": multiturn.user_text(0, 0)},
               {"role": "assistant", "content": "A walk is fine."},
               {"role": "user", "content": multiturn.user_text(0, 1)}]
    prompt = multiturn.transcript(history)
    assert prompt.startswith(f"User: {multiturn.user_text(0, 0)}\nAssistant: A walk is fine.\nUser: ")
    assert prompt.endswith("\nAssistant:")


def test_user_messages_differ_between_conversations_and_turns_and_are_about_40_words_long():
    texts = {multiturn.user_text(conversation, turn) for conversation in range(3) for turn in range(8)}
    assert len(texts) == 24
    assert all(25 <= len(text.split()) <= 45 for text in texts)


def test_answers_lose_the_control_characters_a_prompt_may_not_hold():
    assert multiturn.printable("a\x00b\u202ec\nd\te") == "abc\nd\te"


def test_the_tiny_smoke_run_measures_every_turn_through_the_queen():
    command = [sys.executable, "bench/multiturn.py", "--tiny", "--without-llama-server"]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    lines = [line for line in run.stdout.splitlines() if line.startswith("| ")]
    assert lines[0] == ("| turn | prompt chars (one conversation) | rbee through the queen, 1 conversation "
                        "| rbee through the queen, 2 conversations |")
    rows = [line.split("|")[1:-1] for line in lines[1:]]
    assert [row[0].strip() for row in rows] == ["1", "2", "3"]
    chars = [int(row[1]) for row in rows]
    assert chars == sorted(chars) and len(set(chars)) == 3, "the prompt grows every turn"
    assert all(re.fullmatch(r" [\d.]+ ", cell) for row in rows for cell in row[2:])
