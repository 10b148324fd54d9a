"""Torch plumbing: device choice, seeded generators, threads, tensor <-> numpy."""

from __future__ import annotations

import collections
import contextlib
import types
import warnings
from collections.abc import Callable, Hashable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from .data import read_rows


class DeviceWarning(UserWarning):
    """A requested device is not available and another one is used instead."""


def resolve_device(device: str) -> torch.device:
    """Turn ``"auto"``, ``"cpu"`` or ``"cuda"`` into a usable :class:`torch.device`.

    ``"auto"`` takes CUDA when present. ``"cuda"`` without CUDA falls back to the CPU
    with a :class:`DeviceWarning` (a model trained on a GPU must still load elsewhere).
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        warnings.warn(
            f"device={device!r} was requested but CUDA is not available; using the CPU.",
            DeviceWarning,
            stacklevel=3,
        )
        return torch.device("cpu")
    return torch.device(device)


class CompileWarning(UserWarning):
    """``compile=True`` could not compile the training step; it runs uncompiled."""


def compiled(fn: Callable, key: Hashable | None = None) -> Callable:
    """``torch.compile(fn)``, or ``fn`` itself with a :class:`CompileWarning` where
    compiling fails: no C++ compiler (CPU) or triton (GPU), an unsupported platform.

    ``key`` (e.g. the network's architecture) gives ``fn`` a compile cache of its own
    for that key (:func:`_own_code`): torch keeps compiled graphs per code object and
    stops compiling one after ``torch._dynamo.config.recompile_limit`` (8) graphs, so a
    grid search over more than 8 network shapes would otherwise train the later ones
    uncompiled. Fits with the same key reuse each other's graphs.

    ``torch.compile`` compiles lazily, at the first call of each new kind of input (and
    its backward pass with it), so a failure is caught at any call; that call and all
    later ones run ``fn`` uncompiled. Errors of ``fn`` itself are not swallowed: they
    surface from the uncompiled call. Shapes are compiled as dynamic from the start:
    training batches vary in length (the last one, the truncated flow's inside draws),
    and one dynamic graph compiles in about half the time of a static one and its
    dynamic recompile (truncated spline flow on two moons: 89 s against 162 s), with
    steps as fast.
    """
    if key is not None:
        fn = _own_code(fn, key)
    try:
        fast = torch.compile(fn, dynamic=True)
    except RuntimeError as err:  # platforms torch cannot compile on
        _warn_uncompiled(err)
        return fn
    from torch._dynamo.exc import TorchDynamoException

    def call(*args):
        nonlocal fast
        if fast is not None:
            try:
                return fast(*args)
            except TorchDynamoException as err:
                _warn_uncompiled(err)
                fast = None
        return fn(*args)

    return call


_CODE_COPIES: dict[tuple, types.CodeType] = {}


def _own_code(fn: Callable, key: Hashable) -> Callable:
    """``fn`` running a copy of its code object kept for ``key`` (one per key and
    function), with the same globals and closure: torch's compile cache lives on the
    code object, so each key gets its own cache and recompile limit."""
    code = _CODE_COPIES.setdefault((fn.__code__, key), fn.__code__.replace())
    return types.FunctionType(code, fn.__globals__, fn.__name__, fn.__defaults__,
                              fn.__closure__)


def _warn_uncompiled(err: Exception) -> None:
    reason = next((line.strip() for line in str(err).splitlines() if line.strip()), "")
    warnings.warn(f"compile=True: torch.compile failed ({type(err).__name__}: {reason}); "
                  "training goes on uncompiled.", CompileWarning, stacklevel=2)


def seed_from(rng: np.random.RandomState) -> int:
    """Draw one integer seed from a numpy ``RandomState``."""
    return int(rng.randint(np.iinfo(np.int32).max))


def generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A :class:`torch.Generator` on ``device`` seeded with ``seed``."""
    gen = torch.Generator(device=device)
    gen.manual_seed(int(seed))
    return gen


def quasi_normal(n: int, dim: int, seed: int = 0) -> torch.Tensor:
    """``n`` standard normal points in ``dim`` dimensions that fill space more evenly
    than random draws: a scrambled Sobol sequence through the normal quantile.

    Averages over them (the share of draws inside a box) err less than over as many
    random draws: for a smooth boundary about ``n**-1`` instead of ``n**-0.5``.
    """
    u = torch.quasirandom.SobolEngine(dim, scramble=True, seed=seed).draw(n, dtype=torch.float64)
    return torch.special.ndtri(u.clamp(1e-12, 1 - 1e-12)).float()


@contextlib.contextmanager
def seeded_init(seed: int) -> Iterator[None]:
    """Seed torch's global RNG for module initialisation without disturbing the caller's."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        yield


# Measured on 2 shared CPU cores: the networks are small, so a step is dominated by
# per-operator overhead; one intra-op thread is as fast as two and never collapses when
# the other core is busy (see benchmarks/README.md).
CPU_THREADS = 1


@contextlib.contextmanager
def torch_threads(device: torch.device, n_threads: int | None = None) -> Iterator[int]:
    """Run the body with ``n_threads`` (default ``CPU_THREADS``) threads on the CPU.

    Yields the caller's own thread count (``torch.get_num_threads()`` on entry; 1 on a
    GPU): the budget for work split by :func:`run_chunks`. Inside joblib's workers it
    is already 1, so nested parallelism never oversubscribes the cores.
    """
    n_threads = CPU_THREADS if n_threads is None else n_threads
    if device.type != "cpu":
        yield 1
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(n_threads)
    try:
        yield previous
    finally:
        torch.set_num_threads(previous)


def run_chunks(work: Callable[..., None], jobs: Iterable[tuple], n_threads: int) -> None:
    """Call ``work(*job)`` for every job of ``jobs``, on up to ``n_threads`` threads.

    The threads run whole chunks, each on one intra-op thread (torch releases the GIL
    in its kernels), so unlike torch's own intra-op threads they never wait for each
    other at every operation: a core busy with other work slows its chunks, not every
    step (``benchmarks/draw_threads.py``, 1,000 x 1,000 draws on two moons, 2 cores:
    one thread 1.80 s; two 1.05 s, or 1.57 s with the other core busy, where two
    intra-op threads take 1.11 s and 4.24 s). ``jobs`` is consumed in order, at most two per
    thread ahead of the work, so what it allocates (base draws) stays small. Calls run
    in inference mode; ``work`` writes its own results.
    """
    if n_threads <= 1:
        for job in jobs:
            work(*job)
        return

    def call(job: tuple) -> None:
        with torch.inference_mode():
            work(*job)

    with ThreadPoolExecutor(n_threads) as pool:
        pending: collections.deque = collections.deque()
        try:
            for job in jobs:
                pending.append(pool.submit(call, job))
                if len(pending) >= 2 * n_threads:
                    pending.popleft().result()
            while pending:
                pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


def to_tensor(array: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """A float32 tensor on ``device`` from an array-like."""
    return torch.as_tensor(np.asarray(array, dtype=np.float32), device=device)


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """A float64 numpy array from a tensor on any device."""
    return tensor.detach().to("cpu", torch.float64).numpy()


class StreamedRows:
    """Rows of a bank on disk, read and standardised batch by batch as float32 tensors.

    Indexed like a tensor along its first axis (by an index tensor or a slice), so the
    training loop and inference read one batch at a time from the file.
    """

    device = torch.device("cpu")

    def __init__(self, array: np.ndarray, rows: np.ndarray, mean, std) -> None:
        self.array, self.rows, self.mean, self.std = array, np.asarray(rows), mean, std

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key) -> torch.Tensor:
        if isinstance(key, torch.Tensor):
            key = key.cpu().numpy()
        rows = self.rows[key]
        order = np.argsort(rows, kind="stable")
        block = np.empty((len(rows), *self.array.shape[1:]))
        block[order] = read_rows(self.array, rows[order])
        return torch.from_numpy(((block - self.mean) / self.std).astype(np.float32))
