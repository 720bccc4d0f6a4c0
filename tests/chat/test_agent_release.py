"""A loaded agent holds no reference cycle, so dropping it from the cache gives its memory back at once, by
reference counting, without waiting for a full collection (which, with many agents loaded, is the pause that
`bench/README.md` measures; freezing loaded agents out of those collections would rely on this too).
"""

from __future__ import annotations

import gc
import time
import weakref
from typing import Any

from tests.helpers import create_agent, sdk


def test_an_agent_dropped_from_the_cache_is_freed_by_reference_counting_alone(server: Any) -> None:
    agent = create_agent(server.base_url)
    client = sdk(server.base_url)
    for i in range(3):
        client.chat.completions.create(model=agent, messages=[{"role": "user", "content": f"hello {i}"}])
        client.chat.completions.create(model=agent, messages=[{"role": "user", "content": f"and {i}"}],
                                       stream=True).close()
    live = server.call(server.rt.memory.get(agent))
    refs = [weakref.ref(live), *(weakref.ref(m) for m in live.messages)]
    assert len(refs) > 12
    gc.collect()
    gc.disable()
    try:
        server.rt.memory.forget(agent)
        del live
        deadline = time.monotonic() + 5
        while any(ref() is not None for ref in refs) and time.monotonic() < deadline:
            time.sleep(0.05)  # the server's loop may still hold the last turn's objects for a moment
        assert all(ref() is None for ref in refs)
    finally:
        gc.enable()
