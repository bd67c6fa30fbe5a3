"""torch.distributed backend "hoplite": `import hoplite.torch`, then
`torch.distributed.init_process_group("hoplite")` (torchrun's environment, or init_method).

CPU tensors. Collectives run in order on one thread per group and return Work objects
whose wait(timeout) honours the timeout; a member's death fails every outstanding and later
Work of its group. docs/torch.md has the ops, the types and the launch line for Debian's
torchrun (`--redirects 1 --tee 1`).
"""

import torch.distributed as _dist

from ._torch_backend import ProcessGroupHoplite


def _create(store, rank, world_size, timeout):
    return ProcessGroupHoplite(store, rank, world_size, timeout)


if "HOPLITE" not in _dist.Backend._plugins:
    _dist.Backend.register_backend("hoplite", _create)

__all__ = ["ProcessGroupHoplite"]
