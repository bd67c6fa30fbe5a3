"""allreduce_hoplite.py: torch.distributed on the "hoplite" backend (docs/torch.md).

    PYTHONPATH=build/python /usr/bin/python3 -m torch.distributed.run --standalone \
        --nproc_per_node 4 --redirects 1 --tee 1 examples/torch/allreduce_hoplite.py
or, with hoplite's launcher (it sets torchrun's variables):
    PYTHONPATH=build/python build/hoplite-run -n 4 -- /usr/bin/python3 examples/torch/allreduce_hoplite.py
"""
import torch
import torch.distributed as dist

import hoplite.torch  # noqa: F401  (registers "hoplite")

dist.init_process_group("hoplite")
r, n = dist.get_rank(), dist.get_world_size()
t = torch.full((1 << 20,), float(r + 1))
dist.all_reduce(t)
w = torch.arange(4.0) if r == 0 else torch.zeros(4)
dist.broadcast(w, src=0, async_op=True).wait()
model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(8, 2))
model(torch.randn(16, 8)).sum().backward()  # gradients all-reduced through hoplite
print(f"rank {r}: all_reduce {t[0].item():g} (= {n * (n + 1) // 2}), broadcast {w.tolist()}, "
      f"DDP step done", flush=True)
dist.destroy_process_group()
