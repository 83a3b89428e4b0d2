"""torch.distributed for ``torchrun -m precompute``: one process per device, rank 0 decides
and commits, every rank evaluates its shard.

``torchrun`` sets ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` (read in
:func:`beyond_inet.settings.dist_env`); without them the run is a single process and every
helper here is a no-op. Backend: NCCL on CUDA, gloo on CPU (how the tests run it).
Collectives carry small Python objects only (decisions, error flags); the per-image outputs
go through the staging area on the (shared) filesystem (:mod:`beyond_inet.run.shards`).
"""

from __future__ import annotations

import datetime
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

from beyond_inet.run.engine import Shard
from beyond_inet.settings import DIST_TIMEOUT_SECONDS, dist_env

T = TypeVar("T")


class RankFailedError(RuntimeError):
    """Another rank failed; this one stops without committing anything."""


@dataclass(frozen=True)
class Dist:
    """This process's place in the job: ``rank`` of ``world`` (``local_rank`` on its node)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        """True under torchrun with more than one process."""
        return self.world > 1

    @property
    def main(self) -> bool:
        """Rank 0: opens the store, decides, gathers, commits and prints."""
        return self.rank == 0

    @property
    def shard(self) -> Shard:
        """The samples this rank evaluates."""
        return Shard(self.rank, self.world)

    def device(self, device: str) -> str:
        """``cuda`` -> this rank's GPU (``cuda:<LOCAL_RANK>``); others unchanged."""
        return f"cuda:{self.local_rank}" if device == "cuda" and self.active else device

    def broadcast(self, value: T) -> T:
        """Rank 0's ``value`` on every rank."""
        if not self.active:
            return value
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def check(self, error: BaseException | None) -> None:
        """A collective error check: every rank says whether it failed; if any did, the
        others raise :class:`RankFailedError` naming it (the failing rank re-raises its own)."""
        if not self.active:
            if error is not None:
                raise error
            return
        import torch.distributed as dist

        mine = None if error is None else f"{type(error).__name__}: {error}".splitlines()[0]
        flags: list[Any] = [None] * self.world
        dist.all_gather_object(flags, mine)
        if error is not None:
            raise error
        bad = [(r, m) for r, m in enumerate(flags) if m is not None]
        if bad:
            r, m = bad[0]
            raise RankFailedError(f"rank {r} of {self.world} failed ({m}); nothing was stored.")

    def guarded(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on every rank, then :meth:`check` that all succeeded."""
        try:
            out = fn()
        except Exception as e:
            self.check(e)
            raise
        self.check(None)
        return out

    def close(self) -> None:
        """Leave the process group."""
        if self.active:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


def exit_worker(code: int) -> NoReturn:
    """End a torchrun worker with ``code`` once its work is done (stored, or refused),
    skipping interpreter teardown: the C++ threads of gloo and the model libraries can abort
    a finished worker there ("terminate called without an active exception", SIGABRT),
    turning a complete job into torchrun's failure. Nothing is left to do at that point:
    every commit is its own finished transaction and the output is flushed here."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


#: How long a rank that refuses its input waits for rank 0 to say why (see
#: :func:`await_main_rank`).
REFUSAL_WAIT_SECONDS = 30.0


def await_main_rank(limit: float = REFUSAL_WAIT_SECONDS) -> None:
    """On a refusal every rank shares (bad input), a rank other than 0 waits here instead of
    exiting at once: torchrun stops every worker as soon as one fails, and a rank 1 that
    exited first could have rank 0 stopped before it said why. Rank 0 exits after saying it,
    and torchrun then ends this rank; after ``limit`` seconds it goes on by itself."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        time.sleep(0.1)


#: How often a rank checks that its torchrun agent is alive, and how long it then waits for
#: its main thread to stop by itself before it terminates.
AGENT_POLL_SECONDS = 0.5
AGENT_GRACE_SECONDS = 10.0


def watch_agent(agent: int, speak: bool) -> threading.Thread:
    """Stop this rank when its torchrun agent (parent process ``agent``) dies — a SIGKILLed
    agent cannot stop its workers, which would otherwise run on and commit. A daemon thread
    polls the parent pid; once the rank is orphaned it sends the process SIGINT (the CLI's
    Ctrl-C path: nothing partial is stored, exit 130) and, if that has not ended the process
    within :data:`AGENT_GRACE_SECONDS` (blocked in a collective), terminates it."""

    def watch() -> None:
        while os.getppid() == agent:
            time.sleep(AGENT_POLL_SECONDS)
        if speak:
            print(
                f"error: the torchrun agent (pid {agent}) is gone; stopping this job "
                "(nothing partial is stored).",
                file=sys.stderr,
                flush=True,
            )
        os.kill(os.getpid(), signal.SIGINT)  # a real signal: wakes a blocking call
        time.sleep(AGENT_GRACE_SECONDS)
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=watch, name="torchrun-agent-watch", daemon=True)
    thread.start()
    return thread


def init(cuda: bool) -> Dist:
    """Join the torchrun job when there is one (NCCL on CUDA, gloo otherwise)."""
    env = dist_env()
    if env is None or env[1] <= 1:
        return Dist()
    import torch
    import torch.distributed as dist

    rank, world, local = env
    watch_agent(os.getppid(), rank == 0)
    if cuda:
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group(
            "nccl" if cuda else "gloo",
            timeout=datetime.timedelta(seconds=DIST_TIMEOUT_SECONDS),
        )
    return Dist(rank, world, local)
