"""Primary keys: random version 4 UUIDs, from blocks of the operating system's random bytes
that a forked worker never shares with its parent."""

from __future__ import annotations

import multiprocessing
import threading
import uuid

from vektor.core.database import new_id


def _first_id(queue: multiprocessing.Queue[str]) -> None:
    queue.put(str(new_id()))


def test_ids_are_version_4_and_distinct_across_threads() -> None:
    found: list[uuid.UUID] = []

    def take() -> None:
        found.extend(new_id() for _ in range(2000))

    threads = [threading.Thread(target=take) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(found)) == 8000
    assert {i.version for i in found} == {4}
    assert {i.variant for i in found} == {uuid.RFC_4122}


def test_a_forked_child_draws_ids_of_its_own() -> None:
    new_id()  # the parent holds a block with ids left in it
    queue: multiprocessing.Queue[str] = multiprocessing.get_context("fork").Queue()
    child = multiprocessing.get_context("fork").Process(target=_first_id, args=(queue,))
    child.start()
    try:
        from_child = uuid.UUID(queue.get(timeout=30))
    finally:
        child.join(30)
    assert from_child not in {new_id() for _ in range(255)}
