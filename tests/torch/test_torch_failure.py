"""A member of a "hoplite" group dies: outstanding and later Work fail with an error naming
it instead of hanging, and the group can be destroyed. 4 ranks under torchrun; rank 3 exits
without leaving after the first collectives.
"""

import datetime
import os
import sys
import time

import torch
import torch.distributed as dist

import hoplite.torch  # noqa: F401

dist.init_process_group("hoplite", timeout=datetime.timedelta(seconds=120))
R = dist.get_rank()
t = torch.ones(1 << 20)
dist.all_reduce(t)
assert torch.equal(t, torch.full((1 << 20,), 4.0))
dist.barrier()
if R == 3:
    os._exit(0)  # a crash: no goodbye

t0 = time.monotonic()
w = dist.all_reduce(torch.ones(1 << 20), async_op=True)  # rank 3 never contributes
try:
    w.wait()
    print(f"rank {R}: FAIL: the all_reduce completed without rank 3")
    sys.exit(1)
except RuntimeError as e:
    waited = time.monotonic() - t0
    if "rank 3" not in str(e) or waited > 20:
        print(f"rank {R}: FAIL: after {waited:.1f} s: {e}")
        sys.exit(1)
    print(f"rank {R}: the all_reduce failed after {waited:.2f} s: {e}", flush=True)
try:
    dist.broadcast(torch.zeros(4), src=0)
    print(f"rank {R}: FAIL: a later broadcast succeeded")
    sys.exit(1)
except RuntimeError as e:
    print(f"rank {R}: a later broadcast fails at once too", flush=True)
dist.destroy_process_group()
print(f"rank {R}: group destroyed", flush=True)
