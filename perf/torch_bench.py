"""all_reduce and broadcast through torch.distributed: the "hoplite" backend against torch's
gloo backend, side by side in one run (the default group is hoplite, a gloo group over the
same ranks is made next to it). One process per node, launched by hoplite-run (which sets
torchrun's RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT):

    PYTHONPATH=build/python build/hoplite-run -n 8 --netns --rate 1gbit \
        --env HOPLITE_TRANSPORT=tcp -- /usr/bin/python3 perf/torch_bench.py --size 64M

Prints, nccl-tests style, the slowest rank's time per op (median over the iterations) and
the ratio gloo / hoplite (> 1: hoplite faster).
"""

import argparse
import datetime
import statistics
import time

import torch
import torch.distributed as dist

import hoplite.torch  # noqa: F401


def size(s):
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(s[:-1]) * units[s[-1]] if s[-1] in units else int(s)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--size", type=size, default=64 << 20, help="bytes of float32 (default 64M)")
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    a = p.parse_args()
    dist.init_process_group("hoplite", timeout=datetime.timedelta(minutes=10))
    rank, n = dist.get_rank(), dist.get_world_size()
    groups = {"hoplite": dist.group.WORLD, "gloo": dist.new_group(backend="gloo")}
    gloo = groups["gloo"]
    t = torch.ones(a.size // 4, dtype=torch.float32)
    results = {}
    for op in ("all_reduce", "broadcast"):
        for name, g in groups.items():
            times = []
            for i in range(a.warmup + a.iters):
                t.fill_(rank + 1)
                dist.barrier(group=g)
                t0 = time.perf_counter()
                if op == "all_reduce":
                    dist.all_reduce(t, group=g)
                else:
                    dist.broadcast(t, src=0, group=g)
                dt = torch.tensor([time.perf_counter() - t0], dtype=torch.float64)
                # The slowest rank's time is the op's.
                dist.all_reduce(dt, op=dist.ReduceOp.MAX, group=gloo)
                want = n * (n + 1) / 2 if op == "all_reduce" else 1.0
                assert t[0].item() == want and t[-1].item() == want, (op, name, t[0].item(), want)
                if i >= a.warmup:
                    times.append(dt.item())
            results[(op, name)] = statistics.median(times)
    if rank == 0:
        print(f"# torch_bench: {n} ranks, {a.size} B float32, {a.iters} iterations (median of the slowest rank)")
        print(f"# {'op':>12} {'hoplite ms':>12} {'gloo ms':>12} {'gloo/hoplite':>13}")
        for op in ("all_reduce", "broadcast"):
            h, g = results[(op, "hoplite")], results[(op, "gloo")]
            print(f"  {op:>12} {h * 1e3:12.1f} {g * 1e3:12.1f} {g / h:12.2f}x", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
