"""The one writer: every write to the database goes through one connection on one thread.

Jobs queue up from the event loop (HTTP handlers, the MQTT ingest). The writer thread takes all that
is waiting (up to `batch_max`), runs them in one transaction, each in its own savepoint so a failing
job does not fail its neighbours (group commit), commits once, and only then resolves the callers'
futures and calls the after-commit listeners. Nothing is acknowledged before it is durable.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from edge.db import connect
from edge.ledger.commands import Command, PostResult
from edge.ledger.posting import PostingContext, post

log = logging.getLogger(__name__)
T = TypeVar("T")
CommitListener = Callable[[list[PostResult]], Awaitable[None] | None]


@dataclass(slots=True)
class _Job:
    kind: str  # "post" or "execute"
    payload: Any
    future: asyncio.Future[Any]


_STOP = object()


class WriterClosed(RuntimeError):
    """The writer is shutting down and takes no more work."""


class LedgerWriter:
    """Owns the write connection; see the module docstring."""

    def __init__(
        self,
        db_path: Path,
        *,
        context: Callable[[], PostingContext],
        synchronous: str = "FULL",
        batch_max: int = 256,
    ) -> None:
        self._db_path = db_path
        self._context = context
        self._synchronous = synchronous
        self._batch_max = batch_max
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._listeners: list[CommitListener] = []
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self.batches = 0
        self.jobs = 0

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._closed

    def add_listener(self, listener: CommitListener) -> None:
        """Call `listener(results)` on the event loop after each commit that posted commands."""
        self._listeners.append(listener)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="ledger-writer", daemon=True)
        self._thread.start()

    async def post(self, command: Command) -> PostResult:
        result: PostResult = await self._submit("post", command)
        return result

    async def post_many(self, commands: Sequence[Command]) -> list[PostResult]:
        """Post independent commands; they share group commits but succeed or fail one by one."""
        futures = [self._enqueue("post", c) for c in commands]
        return list(await asyncio.gather(*futures))

    async def execute(self, fn: Callable[..., T], *args: Any) -> T:
        """Run any other write `fn(conn, *args)` in the writer's transaction, in a savepoint of its own."""
        result: T = await self._submit("execute", (fn, args))
        return result

    def _enqueue(self, kind: str, payload: Any) -> asyncio.Future[Any]:
        if self._closed or self._loop is None:
            raise WriterClosed("the ledger writer is not running")
        future: asyncio.Future[Any] = self._loop.create_future()
        self._queue.put(_Job(kind, payload, future))
        return future

    async def _submit(self, kind: str, payload: Any) -> Any:
        return await self._enqueue(kind, payload)

    async def close(self) -> None:
        """Take no more work, finish what is queued (the posting in flight included), stop."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)

    # --- writer thread -------------------------------------------------------------------------

    def _run(self) -> None:
        conn = connect(self._db_path, synchronous=self._synchronous)
        try:
            stopping = False
            while not stopping:
                first = self._queue.get()
                if first is _STOP:
                    break
                batch: list[_Job] = [first]
                while len(batch) < self._batch_max:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is _STOP:
                        stopping = True
                        break
                    batch.append(nxt)
                self._run_batch(conn, batch)
        finally:
            conn.close()

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_Job]) -> None:
        outcomes: list[tuple[_Job, bool, Any]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            ctx = self._context()
            for job in batch:
                if job.kind == "post":
                    try:
                        outcomes.append((job, True, post(conn, job.payload, ctx)))
                    except Exception as exc:  # a bug or a database error: this job only
                        log.exception("posting failed unexpectedly")
                        outcomes.append((job, False, exc))
                else:
                    conn.execute("SAVEPOINT job")
                    fn, args = job.payload
                    try:
                        value = fn(conn, *args)
                        conn.execute("RELEASE job")
                        outcomes.append((job, True, value))
                    except Exception as exc:
                        conn.execute("ROLLBACK TO job")
                        conn.execute("RELEASE job")
                        outcomes.append((job, False, exc))
            conn.execute("COMMIT")
        except Exception as exc:  # the commit itself failed (disk full, I/O error): nothing is durable
            log.exception("group commit failed")
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            outcomes = [(job, False, exc) for job in batch]
        self.batches += 1
        self.jobs += len(batch)
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._deliver, outcomes)

    def _deliver(self, outcomes: list[tuple[_Job, bool, Any]]) -> None:
        posted: list[PostResult] = []
        for job, ok, value in outcomes:
            if job.future.done():
                continue
            if ok:
                job.future.set_result(value)
                if job.kind == "post" and value.ok and not value.replayed:
                    posted.append(value)
            else:
                job.future.set_exception(value)
        if posted:
            for listener in self._listeners:
                try:
                    outcome = listener(posted)
                    if asyncio.iscoroutine(outcome):
                        task = asyncio.ensure_future(outcome)
                        task.add_done_callback(_log_listener_failure)
                except Exception:
                    log.exception("after-commit listener failed")


def _log_listener_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("after-commit listener failed", exc_info=task.exception())
