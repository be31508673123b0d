"""genfw's per-attempt key space on torchrun's shared agent store (``attempt_store``).

torchrun (torch >= 2.4) keeps one TCPStore for every rendezvous round and the workers use it
without a per-attempt prefix, so after an elastic restart the killed attempt's process-group keys
are still there under the names the new attempt reads. These tests reproduce that directly against
a real TCPStore, with threads as the ranks of successive attempts.
"""
import random
import threading
import time
from datetime import timedelta

import pytest
import torch.distributed as dist

from genfw.core.distributed import HANDSHAKE, attempt_store

TIMEOUT = timedelta(seconds=30)


@pytest.fixture
def server():
    return dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False, timeout=TIMEOUT)


def _client(server):
    return dist.TCPStore("127.0.0.1", server.port, is_master=False, timeout=TIMEOUT)


def _attempt(server, world: int, order: list[int] | None = None, gap: float = 0.0) -> list:
    """One start of the job: every rank (a thread with its own connection) gets its attempt store.
    `order` is the ranks' arrival order, `gap` seconds apart (arrival order only, nothing timed)."""
    order = list(range(world)) if order is None else order
    got: dict[int, object] = {}
    errors: list[BaseException] = []

    def rank(r):
        try:
            got[r] = attempt_store(_client(server), r, world, TIMEOUT)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = []
    for r in order:
        threads.append(threading.Thread(target=rank, args=(r,)))
        threads[-1].start()
        time.sleep(gap)
    for t in threads:
        t.join(60)
    assert not errors, errors
    return [got[r] for r in range(world)]


def test_a_restarted_rank_does_not_see_the_killed_attempts_keys(server):
    raw = _client(server)
    old = _attempt(server, 2)
    old[1].set("addr/1", "dead process")  # what gloo publishes: a peer's address
    raw.set("addr/1", "dead process")     # ... and where torch's plain init_process_group puts it
    # the restart: rank 0 is up first and finds rank 1's stale hello; rank 1 comes late
    new = _attempt(server, 2, order=[0, 1], gap=0.2)
    assert raw.check(["addr/1"])          # the hazard: under the old naming the dead address is there
    assert not new[0].check(["addr/1"])   # through genfw's store it is not, until the new rank 1 writes
    new[1].set("addr/1", "live process")
    assert new[0].get("addr/1") == b"live process"
    assert old[0].get("addr/1") == b"dead process"  # the old key space is untouched, only unreachable


def test_every_rank_of_an_attempt_agrees_whatever_the_arrival_order(server):
    rng = random.Random(0)
    raw = _client(server)
    previous = None
    for attempt in range(4):
        world = 4 if attempt < 3 else 3  # the last restart comes back with fewer processes
        order = rng.sample(range(world), world)
        stores = _attempt(server, world, order=order, gap=0.05)
        stores[order[-1]].set("mark", f"attempt {attempt}")  # the last to arrive writes, all read it
        assert {s.get("mark") for s in stores} == {f"attempt {attempt}".encode()}
        if previous is not None:
            assert previous.get("mark") == f"attempt {attempt - 1}".encode()  # distinct key spaces
        previous = stores[0]
    # the handshake cleans up after itself: only the last hello of each rank stays
    left = sorted(k for k in raw.list_keys() if k.startswith(HANDSHAKE))
    assert left == [f"{HANDSHAKE}/hello/{r}" for r in (1, 2, 3)]


def test_leftovers_of_an_attempt_killed_during_the_handshake_are_harmless(server):
    raw = _client(server)
    # the killed attempt: rank 1 said hello, rank 0 answered with its token, then both died
    raw.set(f"{HANDSHAKE}/hello/1", "n-dead")
    raw.set(f"{HANDSHAKE}/welcome/n-dead", "t-dead")
    raw.set(f"{HANDSHAKE}/joined/t-dead/2", "1")
    raw.set("genfw/attempt/t-dead/addr/1", "dead process")
    for order in ([1, 2, 0], [0, 2, 1]):
        stores = _attempt(server, 3, order=order, gap=0.1)
        assert not any(s.check(["addr/1"]) for s in stores)
        stores[0].set("addr/1", "live")
        assert stores[2].get("addr/1") == b"live" and stores[1].get("addr/1") == b"live"
        stores[0].delete_key("addr/1")


def test_a_rank_that_never_comes_is_one_clear_error(server):
    with pytest.raises(RuntimeError, match=r"ranks \[1\] did not join"):
        attempt_store(_client(server), 0, 2, timedelta(seconds=0.3))
