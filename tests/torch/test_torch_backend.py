"""torch.distributed's "hoplite" backend on 4 ranks under Debian's torchrun:

    PYTHONPATH=build/python /usr/bin/python3 -m torch.distributed.run --standalone \
        --nproc_per_node 4 --redirects 1 --tee 1 tests/torch/test_torch_backend.py

Every op on CPU tensors against values computed here, async Work and its timeout, then a
DistributedDataParallel training of a small model for a few steps on hoplite and again on
torch's gloo backend from the same start: the weights must agree. Exits non-zero on the
first failure (torchrun then fails the job).
"""

import datetime
import sys

import torch
import torch.distributed as dist

import hoplite.torch  # noqa: F401  (registers the backend)

dist.init_process_group("hoplite", timeout=datetime.timedelta(seconds=120))
R, N = dist.get_rank(), dist.get_world_size()
assert N == 4, N


def check(cond, what):
    if not cond:
        print(f"rank {R}: FAIL: {what}", flush=True)
        sys.exit(1)


def value(rank, n, dtype):
    return ((torch.arange(n) + rank) % 5 + 1).to(dtype)


# all_reduce: every op and reduce dtype, small and large.
REDUCE = {dist.ReduceOp.SUM: torch.sum, dist.ReduceOp.PRODUCT: torch.prod,
          dist.ReduceOp.MIN: lambda s, dim: torch.min(s, dim=dim).values,
          dist.ReduceOp.MAX: lambda s, dim: torch.max(s, dim=dim).values}
for dtype in (torch.float32, torch.float64, torch.int32, torch.int64, torch.bfloat16, torch.float16):
    for n in (100, 1 << 19):
        every = torch.stack([value(r, n, torch.int64) for r in range(N)])
        for op, f in REDUCE.items():
            t = value(R, n, dtype)
            dist.all_reduce(t, op=op)
            check(torch.equal(t.to(torch.int64), f(every, dim=0)), f"all_reduce {op} {dtype} {n}")
t = torch.full((8,), float(R))
dist.all_reduce(t, op=dist.ReduceOp.AVG)
check(torch.allclose(t, torch.full((8,), 1.5)), "all_reduce AVG")
# A non-contiguous tensor is reduced in place all the same.
m = torch.ones(6, 4)[:, ::2]
dist.all_reduce(m)
check(torch.equal(m, torch.full((6, 2), 4.0)), "all_reduce of a strided view")
try:
    dist.all_reduce(torch.ones(4, dtype=torch.int32), op=dist.ReduceOp.BAND)
    check(False, "BAND should be refused")
except RuntimeError as e:
    check("unsupported reduce op" in str(e), f"BAND error: {e}")

# broadcast, reduce, gathers, scatter.
b = torch.arange(1 << 20, dtype=torch.float32) if R == 1 else torch.zeros(1 << 20)
dist.broadcast(b, src=1)
check(torch.equal(b, torch.arange(1 << 20, dtype=torch.float32)), "broadcast")
t = torch.full((10,), float(R + 1))
dist.reduce(t, dst=2, op=dist.ReduceOp.MAX)
if R == 2:
    check(torch.equal(t, torch.full((10,), 4.0)), "reduce")
outs = [torch.zeros(3, 2, dtype=torch.int64) for _ in range(N)]
dist.all_gather(outs, torch.full((3, 2), R, dtype=torch.int64))
check(all(torch.equal(o, torch.full((3, 2), r, dtype=torch.int64)) for r, o in enumerate(outs)), "all_gather")
flat = torch.zeros(N * 5, dtype=torch.float16)
dist.all_gather_into_tensor(flat, torch.full((5,), float(R), dtype=torch.float16))
check(torch.equal(flat, torch.arange(N).repeat_interleave(5).to(torch.float16)), "all_gather_into_tensor (fp16 bytes)")
g = [torch.zeros(4) for _ in range(N)] if R == 3 else None
dist.gather(torch.full((4,), float(R)), gather_list=g, dst=3)
if R == 3:
    check(all(torch.equal(x, torch.full((4,), float(r))) for r, x in enumerate(g)), "gather")
s = torch.zeros(7)
dist.scatter(s, scatter_list=[torch.full((7,), float(10 + r)) for r in range(N)] if R == 0 else None, src=0)
check(torch.equal(s, torch.full((7,), float(10 + R))), "scatter")

# reduce_scatter, both forms.
o = torch.zeros(6)
dist.reduce_scatter(o, [torch.full((6,), float(R + d)) for d in range(N)])
check(torch.equal(o, torch.full((6,), float(sum(r + R for r in range(N))))), "reduce_scatter")
o = torch.zeros(3, dtype=torch.int64)
dist.reduce_scatter_tensor(o, torch.arange(N * 3, dtype=torch.int64) * (R + 1))
check(torch.equal(o, torch.arange(R * 3, R * 3 + 3) * sum(range(1, N + 1))), "reduce_scatter_tensor")

# all_to_all, even and uneven.
outs = [torch.zeros(2) for _ in range(N)]
dist.all_to_all(outs, [torch.full((2,), float(R * 10 + d)) for d in range(N)])
check(all(torch.equal(x, torch.full((2,), float(s * 10 + R))) for s, x in enumerate(outs)), "all_to_all")
inp = torch.arange(N, dtype=torch.float64) + 100 * R
out = torch.zeros(N, dtype=torch.float64)
dist.all_to_all_single(out, inp)
check(torch.equal(out, torch.tensor([100.0 * s + R for s in range(N)], dtype=torch.float64)), "all_to_all_single")
in_splits = [d + 1 for d in range(N)]          # rank R sends d + 1 rows to rank d
out_splits = [R + 1] * N                      # and receives R + 1 rows from everyone
inp = torch.cat([torch.full((d + 1, 2), float(R)) for d in range(N)])
out = torch.zeros(sum(out_splits), 2)
dist.all_to_all_single(out, inp, out_splits, in_splits)
check(torch.equal(out, torch.cat([torch.full((R + 1, 2), float(s)) for s in range(N)])), "all_to_all_single splits")

# send/recv around the ring, posted in either order, and tags apart.
nxt, prv = (R + 1) % N, (R - 1) % N
got, got7 = torch.zeros(5), torch.zeros(5)
if R % 2 == 0:
    r1 = dist.irecv(got, src=prv)
    r2 = dist.irecv(got7, src=prv, tag=7)
    dist.send(torch.full((5,), 7.0 + R), dst=nxt, tag=7)
    dist.send(torch.full((5,), float(R)), dst=nxt)
else:
    dist.send(torch.full((5,), float(R)), dst=nxt)
    dist.send(torch.full((5,), 7.0 + R), dst=nxt, tag=7)
    r1 = dist.irecv(got, src=prv)
    r2 = dist.irecv(got7, src=prv, tag=7)
r1.wait()
r2.wait()
check(torch.equal(got, torch.full((5,), float(prv))) and torch.equal(got7, torch.full((5,), 7.0 + prv)), "send/recv")

# Async work; a wait that times out raises and leaves the op running.
t = torch.ones(1 << 16)
w = dist.all_reduce(t, async_op=True)
check(w.wait(), "async all_reduce")
check(w.is_completed() and torch.equal(t, torch.full((1 << 16,), float(N))), "async all_reduce result")
never = torch.zeros(1)
w = dist.irecv(never, src=prv, tag=99)
try:
    w.wait(datetime.timedelta(milliseconds=300))
    check(False, "a wait for a recv nobody sends should time out")
except RuntimeError as e:
    check("not complete after 300 ms" in str(e), f"timeout message: {e}")
check(not w.is_completed(), "the timed-out recv keeps waiting")
dist.barrier()  # every rank has checked before anyone sends
dist.send(torch.ones(1), dst=nxt, tag=99)  # satisfies the next rank's
w.wait()
dist.barrier()
print(f"rank {R}: every op passed", flush=True)


# DistributedDataParallel: hoplite against torch's gloo from the same start.
def train(group):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 4))
    ddp = torch.nn.parallel.DistributedDataParallel(model, process_group=group, bucket_cap_mb=0.01)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
    gen = torch.Generator().manual_seed(100 + R)  # each rank its own data
    for _ in range(5):
        x, y = torch.randn(32, 16, generator=gen), torch.randn(32, 4, generator=gen)
        opt.zero_grad()
        torch.nn.functional.mse_loss(ddp(x), y).backward()
        opt.step()
    return [p.detach().clone() for p in model.parameters()]


ours = train(dist.group.WORLD)
gloo = train(dist.new_group(backend="gloo"))
diff = max((a - b).abs().max().item() for a, b in zip(ours, gloo))
check(diff < 1e-5, f"DDP weights differ from gloo's by {diff}")
mine = torch.cat([p.reshape(-1) for p in ours])
first = mine.clone()
dist.broadcast(first, src=0)
check(torch.equal(mine, first), "DDP replicas differ")
print(f"rank {R}: DDP on hoplite ends with gloo's weights (max difference {diff:.2e})", flush=True)
dist.destroy_process_group()
