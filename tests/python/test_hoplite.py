"""The Python module on a real cluster: every rank of `hoplite-run -n 3` runs this file
under pytest, in the same order, so the tests' collectives line up across ranks.

    PYTHONPATH=build/python build/hoplite-run -n 3 -- /usr/bin/python3 -m pytest tests/python
"""

import os
import threading
import time

import numpy as np
import pytest

import hoplite

WORLD = 3


@pytest.fixture(scope="module")
def node():
    n = hoplite.Node.from_env()
    assert n.world_size == WORLD
    yield n
    n.close()


def value(rank, count):
    return (np.arange(count) + rank) % 5 + 1


def test_put_and_get_any_buffer(node):
    r = node.rank
    node.put(f"py/bytes/{r}", b"hello %d" % r)
    node.put(f"py/bytearray/{r}", bytearray(b"x" * 1000))
    node.put(f"py/memoryview/{r}", memoryview(b"abcdef")[2:])
    node.put(hoplite.ObjectID.from_name(f"py/array/{r}"), np.arange(1 << 18, dtype=np.int64) * r)
    node.barrier()
    for src in range(WORLD):
        v = node.get(f"py/bytes/{src}", timeout=10)
        assert v.tobytes() == b"hello %d" % src
        m = memoryview(v)
        assert m.readonly and len(m) == len(v)
        assert bytes(node.get(f"py/memoryview/{src}", 10)) == b"cdef"
        a = node.get_array(f"py/array/{src}", np.int64, timeout=10)
        assert np.array_equal(a, np.arange(1 << 18, dtype=np.int64) * src)
    node.barrier()
    for what in ("bytes", "bytearray", "memoryview", "array"):
        node.remove(f"py/{what}/{r}")


def test_arrays_are_zero_copy_and_pinned(node):
    r = node.rank
    mine = f"py/pinned/{r}"
    node.put(mine, np.full(1 << 20, r + 0.5, dtype=np.float32))
    node.barrier()
    peer = f"py/pinned/{(r + 1) % WORLD}"
    a = node.get_array(peer, np.float32, timeout=10)
    b = node.get_array(peer, np.float32, timeout=10)
    assert not a.flags.writeable
    with pytest.raises(ValueError):
        a[0] = 1
    # Both arrays are the store's memory itself.
    assert a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
    node.barrier()
    node.remove(mine)
    node.barrier()
    # Removed everywhere, but our views still pin the bytes.
    assert not node.contains(peer)
    assert np.all(a == ((r + 1) % WORLD) + 0.5)
    with pytest.raises(hoplite.NotFoundError):
        node.get(peer, 10, must_exist=True)


def test_futures_before_the_put(node):
    r = node.rank
    f = node.get_async(f"py/later/{(r + 1) % WORLD}")
    assert not f.done()
    node.barrier()
    node.put(f"py/later/{r}", np.array([r], dtype=np.int32))
    v = f.result(timeout=10)
    assert f.done()
    assert np.frombuffer(v, np.int32)[0] == (r + 1) % WORLD
    node.barrier()
    node.remove(f"py/later/{r}")


def test_streaming_writer(node):
    if node.rank == 0:
        w = node.create("py/stream", 1 << 20)
        buf = np.frombuffer(w, dtype=np.uint8)
        buf[: 1 << 19] = 7
        w.publish(1 << 19)
        node.barrier()
        buf[1 << 19:] = 9
        w.seal()
    else:
        f = node.get_async("py/stream")
        node.barrier()
        a = np.frombuffer(f.result(timeout=10), np.uint8)
        assert a[0] == 7 and a[-1] == 9 and a.size == 1 << 20
    node.barrier()
    if node.rank == 0:
        node.remove("py/stream")


def test_errors_raise_by_group(node):
    r = node.rank
    with pytest.raises(hoplite.TimeoutError) as e:
        node.get(f"py/never/{r}", timeout=0.2)
    assert isinstance(e.value, TimeoutError) and isinstance(e.value, hoplite.HopliteError)
    assert "no complete copy" in str(e.value)
    with pytest.raises(KeyError):
        node.get(f"py/nothing/{r}", 10, must_exist=True)
    node.put(f"py/once/{r}", b"1")
    with pytest.raises(hoplite.AlreadyExistsError):
        node.put(f"py/once/{r}", b"2")
    node.remove(f"py/once/{r}")
    with pytest.raises(hoplite.InvalidArgumentError):
        node.allreduce(np.zeros(4, np.complex64))
    with pytest.raises(ValueError):
        node.allreduce(np.zeros(4, np.float32), op="mean")
    with pytest.raises(ValueError):
        node.get("x", timeout=-1)


def test_waits_release_the_gil(node):
    count = 0
    stop = False

    def spin():
        nonlocal count
        while not stop:
            count += 1

    t = threading.Thread(target=spin)
    t.start()
    time.sleep(0.05)
    before = count
    with pytest.raises(hoplite.TimeoutError):
        node.get(f"py/gil/{node.rank}", timeout=0.5)
    during = count - before
    stop = True
    t.join()
    # The spinning thread ran all through the wait (it would not move at all
    # if the wait held the GIL).
    assert during > 10000, during


def test_reduce_any_k_of_n(node):
    r = node.rank
    node.put(f"py/rin/{r}", value(r, 1 << 16).astype(np.int64))
    node.barrier()
    if r == 0:
        inputs = [f"py/rin/{i}" for i in range(WORLD)]
        res = node.reduce(inputs, "py/rout", op="sum", dtype=np.int64, k=2)
        assert len(res.used) == 2
        ids = [hoplite.ObjectID.from_name(i) for i in inputs]
        used = [ids.index(u) for u in res.used]
        out = node.get_array("py/rout", np.int64, timeout=10)
        assert np.array_equal(out, value(used[0], 1 << 16) + value(used[1], 1 << 16))
        del out
        node.remove("py/rout")
    node.barrier()
    node.remove(f"py/rin/{r}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int64, np.float16])
@pytest.mark.parametrize("op", ["sum", "prod", "min", "max"])
@pytest.mark.parametrize("count", [100, 1 << 19])
def test_allreduce(node, dtype, op, count):
    mine = value(node.rank, count).astype(dtype)
    want = value(0, count).astype(np.int64)
    for r in range(1, WORLD):
        other = value(r, count).astype(np.int64)
        want = {"sum": want + other, "prod": want * other, "min": np.minimum(want, other),
                "max": np.maximum(want, other)}[op]
    got = node.allreduce(mine, op=op)
    assert got.dtype == np.dtype(dtype)
    assert np.array_equal(got.astype(np.int64), want)


def test_broadcast_gather_allgather_reduce_to(node):
    r = node.rank
    buf = np.arange(1 << 18, dtype=np.float32) if r == 1 else np.zeros(1 << 18, np.float32)
    node.broadcast(buf, root=1)
    assert np.array_equal(buf, np.arange(1 << 18, dtype=np.float32))
    part = np.full((4, 5), r, dtype=np.int32)
    g = node.gather(part, root=2)
    if r == 2:
        assert g.shape == (WORLD, 4, 5) and all(np.all(g[i] == i) for i in range(WORLD))
    else:
        assert g is None
    ag = node.allgather(part)
    assert all(np.all(ag[i] == i) for i in range(WORLD))
    red = node.reduce_to(np.full(7, r + 1, np.float64), root=0, op="max")
    if r == 0:
        assert np.all(red == WORLD)
    else:
        assert red is None
    with pytest.raises(hoplite.InvalidArgumentError):
        node.broadcast(np.zeros(4, np.float32)[::2], root=0)


def test_stats(node):
    s = node.stats()
    assert s["store_capacity"] > 0 and s["bytes_received"] > 0


def test_membership_last(node):
    """Rank 2 dies without leaving; the others hear of it and go on."""
    events = []
    seen = threading.Event()

    def on_change(rank, alive, epoch, reason):
        events.append((rank, alive, epoch, reason))
        seen.set()

    node.on_membership_change(on_change)
    epoch = node.membership_epoch
    node.barrier()
    if node.rank == 2:
        os._exit(0)
    assert seen.wait(10), "no membership event"
    assert events[0][0] == 2 and events[0][1] is False and events[0][2] > epoch
    assert node.failed_ranks() == [2]
    node.barrier()
