"""The token relay: every delivery arrives, in order, before what the same thread schedules
later, with fewer loop wake-ups than deliveries when many come at once."""

import asyncio
import threading

from rbee.worker.token_relay import TokenRelay


def test_tokens_from_a_thread_arrive_in_order_before_its_later_callbacks_with_few_wakeups():
    async def run() -> tuple[list, int]:
        loop = asyncio.get_running_loop()
        relay = TokenRelay(loop)
        seen: list = []
        done = asyncio.Event()

        def engine_thread() -> None:
            for step in range(50):
                for stream in range(64):
                    relay.call(seen.append, (step, stream))
            loop.call_soon_threadsafe(lambda: (seen.append("finished"), done.set()))

        thread = threading.Thread(target=engine_thread)
        thread.start()
        await done.wait()
        thread.join()
        return seen, relay.wakeups

    seen, wakeups = asyncio.run(run())
    assert seen == [(step, stream) for step in range(50) for stream in range(64)] + ["finished"]
    assert 1 <= wakeups < 50 * 64


def test_a_lone_token_is_delivered_without_waiting_for_others():
    async def run() -> list:
        loop = asyncio.get_running_loop()
        relay = TokenRelay(loop)
        seen: list = []
        threading.Thread(target=relay.call, args=(seen.append, "only")).start()
        for _ in range(200):
            if seen:
                break
            await asyncio.sleep(0.01)
        return seen

    assert asyncio.run(run()) == ["only"]
