"""hello_hoplite.py: the Python module in one page (docs/python.md).

    PYTHONPATH=build/python build/hoplite-run -n 4 -- /usr/bin/python3 examples/python/hello_hoplite.py
"""
import numpy as np

import hoplite

with hoplite.Node.from_env() as node:
    r, n = node.rank, node.world_size
    node.put(f"hello/grad/{r}", np.full(1 << 20, r, np.float32))
    # A future of the neighbour's object, then a zero-copy read-only view of it.
    peer = np.frombuffer(node.get_async(f"hello/grad/{(r + 1) % n}").result(timeout=30), np.float32)
    if r == 0:
        # The first 2 gradients to exist, summed (any k of n).
        res = node.reduce([f"hello/grad/{i}" for i in range(n)], "hello/sum", dtype=np.float32, k=2)
        total = node.get_array("hello/sum", np.float32)
        print(f"rank 0: 2 of {n} gradients summed: {total[0]:g} (inputs {[u.hex[:8] for u in res.used]})")
        del total
    s = node.allreduce(np.ones(4) * r)
    print(f"rank {r}: neighbour's first element {peer[0]:g}; allreduce {s.tolist()}")
    del peer
    node.barrier()
    node.remove(f"hello/grad/{r}")
    if r == 0:
        node.remove("hello/sum")
