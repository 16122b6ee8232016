"""The model threads: every caller gets its own answer, by callback or future, whatever
another caller's callback does, and the work is spread over the threads."""

from __future__ import annotations

import asyncio
import threading

import pytest

from modelyard.serving.executor import InferencePool


@pytest.mark.parametrize("threads", [1, 2])
def test_each_call_gets_its_own_answer_even_when_another_callback_fails(threads: int) -> None:
    pool = InferencePool(threads)
    ran_on: set[str] = set()

    def work(x: int) -> float:
        ran_on.add(threading.current_thread().name)
        return 1 / x

    async def scenario() -> dict[int, tuple[object, object]]:
        loop = asyncio.get_running_loop()
        answered: dict[int, tuple[object, object]] = {}
        finished = loop.create_future()

        def done_for(i: int):  # type: ignore[no-untyped-def]
            def done(result: object, error: object) -> None:
                answered[i] = (result, error)
                if len(answered) == 20 and not finished.done():
                    finished.set_result(None)
                if i == 3:
                    raise RuntimeError("this caller's own callback breaks")
            return done

        for i in range(20):
            pool.call(work, (i,), done_for(i))
        future = pool.run(work, 4)  # and one that awaits a future
        await asyncio.wait_for(finished, 10)
        assert await asyncio.wait_for(future, 10) == 0.25
        return answered

    try:
        answered = asyncio.run(scenario())
    finally:
        pool.shutdown()
    assert isinstance(answered[0][1], ZeroDivisionError)
    assert answered[5] == (0.2, None)
    assert all(answered[i] == (1 / i, None) for i in range(1, 20))
    assert len(ran_on) <= threads
