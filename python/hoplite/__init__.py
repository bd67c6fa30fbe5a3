"""hoplite: dynamic, fault-tolerant collective communication for task-based systems.

    import numpy as np, hoplite
    node = hoplite.Node.from_env()            # under hoplite-run, torchrun, mpirun, srun
    node.put("weights/7", np.arange(4, dtype=np.float32))
    w = node.get_array("weights/7", np.float32, timeout=10)   # read-only, zero-copy, pinned
    total = node.allreduce(np.ones(4, np.float32))

Objects are named by an ObjectID or by a str (hashed to one, the same on every node).
Every call that waits releases the GIL. Errors raise subclasses of HopliteError, one
per group (TimeoutError is also the builtin TimeoutError, NotFoundError a KeyError,
InvalidArgumentError a ValueError, PeerFailureError a ConnectionError, CapacityError
a MemoryError). docs/python.md has the whole surface.
"""

import numpy as _np

from . import _hoplite
from ._hoplite import (  # noqa: F401  (re-exported)
    AlreadyExistsError,
    CancelledError,
    CapacityError,
    HopliteError,
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    ObjectFuture,
    ObjectID,
    ObjectView,
    ObjectWriter,
    PeerFailureError,
    ProtocolError,
    ReduceResult,
    TimeoutError,
)

__all__ = [
    "Node", "ObjectID", "ObjectView", "ObjectFuture", "ObjectWriter", "ReduceResult",
    "HopliteError", "InvalidArgumentError", "NotFoundError", "AlreadyExistsError", "TimeoutError",
    "CapacityError", "PeerFailureError", "ProtocolError", "CancelledError", "InternalError",
]

# numpy dtypes the reduce kernels take, by the names the core parses.
_DTYPES = {
    _np.dtype(_np.float32): "float",
    _np.dtype(_np.float64): "double",
    _np.dtype(_np.int32): "int32",
    _np.dtype(_np.int64): "int64",
    _np.dtype(_np.float16): "float16",
}
_OPS = ("sum", "prod", "min", "max")


def _dtype_name(dtype):
    d = _np.dtype(dtype)
    try:
        return _DTYPES[d]
    except KeyError:
        raise InvalidArgumentError(
            f"dtype {d} has no reduce kernel (float32, float64, int32, int64, float16)") from None


def _op_name(op):
    if op not in _OPS:
        raise InvalidArgumentError(f"unknown reduce op {op!r} (one of {', '.join(_OPS)})")
    return op


def _array(a):
    a = _np.asarray(a)
    if not a.flags.c_contiguous:
        a = _np.ascontiguousarray(a)
    return a


class Node(_hoplite.Node):
    """One member of a cluster: its object store, directory shard and planes.

    Node.from_env() joins from the launcher's environment; Node(rank=, world_size=,
    bootstrap_address=, ...) from explicit options. close() (or a with block) leaves;
    views and futures taken from the node keep it alive until they go.
    """

    @classmethod
    def from_env(cls):
        """Joins with the options of hoplite-run, torchrun, mpirun or srun."""
        return cls()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def get_array(self, id, dtype, timeout=None, *, must_exist=False):
        """get() as a read-only numpy array over the store's memory (no copy)."""
        return _np.frombuffer(self.get(id, timeout, must_exist=must_exist), dtype=dtype)

    def reduce(self, inputs, target, op="sum", dtype=_np.float32, k=0, timeout=None,
               allow_stripes=False):
        """Reduces the first k (0: all) of `inputs` into `target`; returns once the
        target is complete here, with the inputs used (ReduceResult.used)."""
        return self._reduce(list(inputs), target, _op_name(op), _dtype_name(dtype), k, timeout,
                            allow_stripes)

    # MPI-style collectives on arrays: every rank calls them in the same order.

    def allreduce(self, array, op="sum", out=None, timeout=None):
        a = _array(array)
        if out is None:
            out = _np.empty_like(a)
        self._allreduce(a, out, _op_name(op), _dtype_name(a.dtype), timeout)
        return out

    def reduce_to(self, array, root, op="sum", out=None, timeout=None):
        """The reduction of every rank's `array` at `root` (None elsewhere)."""
        a = _array(array)
        mine = self.rank == root
        if out is None:
            out = _np.empty_like(a) if mine else _np.empty(0, a.dtype)
        self._reduce_to(a, out, root, _op_name(op), _dtype_name(a.dtype), timeout)
        return out if mine else None

    def broadcast(self, array, root, timeout=None):
        """Root's `array` into every rank's `array` (in place; C-contiguous)."""
        if not isinstance(array, _np.ndarray) or not array.flags.c_contiguous:
            raise InvalidArgumentError("broadcast needs a C-contiguous numpy array to fill in place")
        self._broadcast(array, root, timeout)
        return array

    def gather(self, array, root, timeout=None):
        """Every rank's `array` stacked at `root` (shape (world_size, *shape)); None elsewhere."""
        a = _array(array)
        mine = self.rank == root
        out = _np.empty((self.world_size,) + a.shape, a.dtype) if mine else _np.empty(0, a.dtype)
        self._gather(a, out, root, False, timeout)
        return out if mine else None

    def allgather(self, array, timeout=None):
        a = _array(array)
        out = _np.empty((self.world_size,) + a.shape, a.dtype)
        self._gather(a, out, 0, True, timeout)
        return out
