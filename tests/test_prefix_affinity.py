"""The queen's prefix keys: the same for every turn of a chat up to what a turn appends, and the
worker that served the longest shared key remembered, the oldest keys forgotten first."""

from rbee.common.tunables import Timings
from rbee.queen.routing.prefix_affinity import PrefixAffinity

SYSTEM = {"role": "system", "content": "You answer questions about dogs and cats, briefly. " * 3}


def test_a_later_turn_starts_with_every_key_of_the_turn_before():
    affinity = PrefixAffinity(Timings(prefix_affinity_block_chars=16))
    first = affinity.keys({"messages": [SYSTEM, {"role": "user", "content": "Hello"}]})
    later = affinity.keys({"messages": [SYSTEM, {"role": "user", "content": "Hello"},
                                        {"role": "assistant", "content": "Hi."},
                                        {"role": "user", "content": "What is a dog?"}]})
    assert len(later) > len(first) > 1
    assert later[:len(first)] == first


def test_prompts_that_differ_in_their_first_block_share_no_key():
    affinity = PrefixAffinity(Timings(prefix_affinity_block_chars=16))
    assert not set(affinity.keys({"prompt": "a" * 64})) & set(affinity.keys({"prompt": "b" + "a" * 63}))


def test_a_prompt_shorter_than_a_block_and_the_text_past_the_last_block_get_no_key():
    affinity = PrefixAffinity(Timings(prefix_affinity_block_chars=16, prefix_affinity_blocks=2))
    assert affinity.keys({"prompt": "short"}) == ()
    assert len(affinity.keys({"prompt": "x" * 40})) == 2
    assert len(affinity.keys({"prompt": "x" * 400})) == 2


def test_the_worker_of_the_longest_shared_key_wins_within_its_pool():
    affinity = PrefixAffinity(Timings(prefix_affinity_block_chars=16))
    short, long = affinity.keys({"prompt": "p" * 16}), affinity.keys({"prompt": "p" * 48})
    affinity.served("m", short, "w-1")
    affinity.served("m", long, "w-2")
    assert affinity.worker_of("m", long + affinity.keys({"prompt": "p" * 64})[3:]) == "w-2"
    assert affinity.worker_of("other", long) is None
    assert affinity.worker_of("m", ()) is None


def test_the_least_recently_used_keys_are_forgotten_beyond_the_limit():
    affinity = PrefixAffinity(Timings(prefix_affinity_block_chars=16, prefix_affinity_entries=2))
    old, new = affinity.keys({"prompt": "o" * 32}), affinity.keys({"prompt": "n" * 32})
    affinity.served("m", old, "w-1")
    affinity.served("m", new, "w-2")
    assert affinity.worker_of("m", old) is None
    assert affinity.worker_of("m", new) == "w-2"
