"""The one writer: every write to the database goes through one connection, in a process of its own.

Jobs queue up from the event loop (HTTP handlers, the MQTT ingest). The writer process takes all that is
waiting (up to `batch_max`), runs them in one transaction, each in its own savepoint so a failing job does
not fail its neighbours (group commit), commits once, and only then sends the results back; the callers'
futures resolve and the after-commit listeners run. Nothing is acknowledged before it is durable.

Why a process and not a thread: posting is Python work, and in a thread it would hold the interpreter
lock that the broker's event loop needs to read and ack device events. In its own process the ledger runs
on the second core while the loop keeps serving. Jobs and results cross a pipe, pickled: commands and
results are plain frozen dataclasses, and `execute(fn, *args)` takes a module-level function.

If the box is killed, the writer reads end-of-file on its pipe, finishes the batch it has (a transaction
is all or nothing either way) and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import multiprocessing
import pickle
import queue
import signal
import sqlite3
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, TypeVar

from edge.db import connect
from edge.ledger.commands import Command, PostResult
from edge.ledger.posting import Guard, PostingContext, post
from edge.ledger.vouchers import RuleBook

log = logging.getLogger(__name__)
T = TypeVar("T")
CommitListener = Callable[[list[PostResult]], Awaitable[None] | None]


class WriterClosed(RuntimeError):
    """The writer is not running (stopped, or its process died) and takes no work."""


class WriterJobFailed(RuntimeError):
    """A job failed with an exception that could not be sent back as itself."""


@dataclass(frozen=True, slots=True)
class _Job:
    """One job as it crosses the pipe."""

    job_id: int
    kind: str  # "post", "execute" or "execute_posting"
    payload: Any  # a Command, or (fn, args)
    now: datetime
    business_date: date
    default_location: str
    allow_negative: bool


_STOP = "stop"


class LedgerWriter:
    """Owns the write connection through the writer process; see the module docstring."""

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
        self._listeners: list[CommitListener] = []
        self._outbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._futures: dict[int, asyncio.Future[Any]] = {}
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._process: multiprocessing.process.BaseProcess | None = None
        self._pipe: Connection | None = None
        self._threads: list[threading.Thread] = []
        self._closed = False
        self._broken = False
        self.batches = 0
        self.jobs = 0

    @property
    def running(self) -> bool:
        alive = self._process is not None and self._process.is_alive()
        return alive and not self._closed and not self._broken

    def add_listener(self, listener: CommitListener) -> None:
        """Call `listener(results)` on the event loop after each commit that posted commands."""
        self._listeners.append(listener)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        ctx = self._context()
        # fork, not spawn: the child starts in serve_writer at once, with the signal mask set below, instead
        # of re-importing the box (where a Ctrl-C would still kill it). The writer starts before the broker
        # and the HTTP server, so no threads of theirs are copied.
        mp = multiprocessing.get_context("fork")
        parent, child = mp.Pipe(duplex=True)
        self._process = mp.Process(
            target=serve_writer,
            args=(child, str(self._db_path), self._synchronous, self._batch_max, ctx.rules, ctx.guards, parent),
            name="storebox-writer",
            daemon=True,
        )
        # Ctrl-C and SIGTERM reach the whole process group. The writer must not die of them (the box stops
        # it after the last job), not even while it is still importing: it starts with them blocked.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            self._process.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        child.close()
        self._pipe = parent
        self._threads = [
            threading.Thread(target=self._send_loop, name="writer-send", daemon=True),
            threading.Thread(target=self._receive_loop, name="writer-receive", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    async def post(self, command: Command) -> PostResult:
        result: PostResult = await self._enqueue("post", command)
        return result

    async def post_many(self, commands: Sequence[Command]) -> list[PostResult]:
        """Post independent commands; they share group commits but succeed or fail one by one."""
        futures = [self._enqueue("post", c) for c in commands]
        return list(await asyncio.gather(*futures))

    async def execute(self, fn: Callable[..., T], *args: Any) -> T:
        """Run any other write `fn(conn, *args)` in the writer's transaction, in a savepoint of its own.

        `fn` must be a module-level function and `args` picklable: they run in the writer process.
        """
        result: T = await self._enqueue("execute", (fn, args))
        return result

    async def execute_posting(self, fn: Callable[..., T], *args: Any) -> T:
        """Like `execute`, but runs `fn(conn, ctx, *args)` with the PostingContext of this job, so that `fn`
        can post commands (`edge.ledger.posting.post(conn, command, ctx)`) along with its own writes."""
        result: T = await self._enqueue("execute_posting", (fn, args))
        return result

    def _enqueue(self, kind: str, payload: Any) -> asyncio.Future[Any]:
        if self._closed or self._broken or self._loop is None:
            raise WriterClosed("the ledger writer is not running / 记账进程未运行")
        ctx = self._context()
        job = _Job(next(self._ids), kind, payload, ctx.now, ctx.business_date, ctx.default_location, ctx.allow_negative)
        future: asyncio.Future[Any] = self._loop.create_future()
        self._futures[job.job_id] = future
        self._outbox.put(job)
        return future

    async def close(self) -> None:
        """Take no more work, finish what is queued (the batch in flight included), stop the process."""
        if self._closed:
            return
        self._closed = True
        if self._process is None:
            return
        self._outbox.put(_STOP)
        await asyncio.to_thread(self._process.join, 30)
        if self._process.is_alive():
            log.error("writer process did not stop in 30 s; terminating it")
            self._process.terminate()
        for thread in self._threads:
            await asyncio.to_thread(thread.join, 5)
        self._fail_pending(WriterClosed("the ledger writer stopped / 记账进程已停止"))

    # --- parent-side threads --------------------------------------------------------------------

    def _send_loop(self) -> None:
        assert self._pipe is not None
        while True:
            first = self._outbox.get()
            jobs = [first]
            while len(jobs) < self._batch_max:
                try:
                    jobs.append(self._outbox.get_nowait())
                except queue.Empty:
                    break
            stop = _STOP in jobs
            work = [j for j in jobs if j != _STOP]
            try:
                if work:
                    self._pipe.send(work)
                if stop:
                    self._pipe.send(_STOP)
                    return
            except (OSError, ValueError, pickle.PicklingError, AttributeError, TypeError) as exc:
                if isinstance(exc, OSError | ValueError):
                    self._mark_broken("sending to the writer failed")
                    return
                self._resolve([(j.job_id, False, WriterJobFailed(f"job cannot be sent: {exc}")) for j in work])

    def _receive_loop(self) -> None:
        assert self._pipe is not None
        while True:
            try:
                outcomes = self._pipe.recv()
            except (EOFError, OSError):
                if not self._closed:
                    self._mark_broken("the writer process ended")
                return
            self.batches += 1
            self.jobs += len(outcomes)
            self._resolve(outcomes)

    def _mark_broken(self, why: str) -> None:
        self._broken = True
        log.error("%s; the box cannot post until it restarts / 记账进程异常", why)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._fail_pending, WriterClosed(f"{why} / 记账进程异常"))

    def _resolve(self, outcomes: list[tuple[int, bool, Any]]) -> None:
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
                self._loop.call_soon_threadsafe(self._deliver, outcomes)

    def _fail_pending(self, error: Exception) -> None:
        for future in self._futures.values():
            if not future.done():
                future.set_exception(error)
        self._futures.clear()

    def _deliver(self, outcomes: list[tuple[int, bool, Any]]) -> None:
        posted: list[PostResult] = []
        for job_id, ok, value in outcomes:
            future = self._futures.pop(job_id, None)
            if future is None or future.done():
                continue
            if ok:
                future.set_result(value)
                if isinstance(value, PostResult) and value.ok and not value.replayed:
                    posted.append(value)
                # A job that posted (scan-to-receive, ...) hands its postings on like a posting job does.
                posted.extend(r for r in getattr(value, "post_results", ()) if r.ok and not r.replayed)
            else:
                future.set_exception(value)
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


# --- the writer process ---------------------------------------------------------------------------


def serve_writer(
    pipe: Connection,
    db_path: str,
    synchronous: str,
    batch_max: int,
    rules: RuleBook,
    guards: tuple[Guard, ...] = (),
    box_end: Connection | None = None,
) -> None:
    """Entry point of the writer process: read jobs, post them in group commits, send results back."""
    # The fork copied the box's end of the pipe into this process: close it here, or the pipe never reaches
    # end-of-file when the box dies (kill -9), and the writer would wait for ever holding the database open.
    if box_end is not None:
        box_end.close()
    # The box decides when the writer stops: it sends "stop" after the last job, or the pipe closes.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    conn = connect(Path(db_path), synchronous=synchronous)
    pending: list[_Job] = []
    stopping = False
    try:
        while not stopping:
            if not pending:
                try:
                    message = pipe.recv()
                except (EOFError, OSError):
                    return  # the box is gone: nobody to answer
                if message == _STOP:
                    return
                pending.extend(message)
            while len(pending) < batch_max and pipe.poll():
                message = pipe.recv()
                if message == _STOP:
                    stopping = True
                    break
                pending.extend(message)
            batch, pending = pending[:batch_max], pending[batch_max:]
            outcomes = run_batch(conn, batch, rules, guards)
            try:
                pipe.send(outcomes)
            except (OSError, ValueError):
                return
        while pending:  # asked to stop: finish what was already handed over
            batch, pending = pending[:batch_max], pending[batch_max:]
            pipe.send(run_batch(conn, batch, rules, guards))
    finally:
        conn.close()


def run_batch(
    conn: sqlite3.Connection, batch: list[_Job], rules: RuleBook, guards: tuple[Guard, ...] = ()
) -> list[tuple[int, bool, Any]]:
    """Run jobs in one transaction, each in its own savepoint; commit once. Return (job id, ok, value)."""
    outcomes: list[tuple[int, bool, Any]] = []
    try:
        conn.execute("BEGIN IMMEDIATE")
        for job in batch:
            ctx = PostingContext(job.now, job.business_date, rules, job.default_location, job.allow_negative, guards)
            if job.kind == "post":
                try:
                    outcomes.append((job.job_id, True, post(conn, job.payload, ctx)))
                except Exception as exc:  # a bug or a database error: this job only
                    log.exception("posting failed unexpectedly")
                    outcomes.append(_sendable(job.job_id, False, exc))
                continue
            fn, args = job.payload
            conn.execute("SAVEPOINT job")
            try:
                value = fn(conn, ctx, *args) if job.kind == "execute_posting" else fn(conn, *args)
                conn.execute("RELEASE job")
                outcomes.append(_sendable(job.job_id, True, value))
            except Exception as exc:
                conn.execute("ROLLBACK TO job")
                conn.execute("RELEASE job")
                outcomes.append(_sendable(job.job_id, False, exc))
        conn.execute("COMMIT")
    except Exception as exc:  # the commit itself failed (disk full, I/O error): nothing is durable
        log.exception("group commit failed")
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        outcomes = [_sendable(job.job_id, False, exc) for job in batch]
    return outcomes


def _sendable(job_id: int, ok: bool, value: Any) -> tuple[int, bool, Any]:
    """Make sure a result crosses the pipe: one that does not pickle is sent as a failure with its text."""
    try:
        pickle.loads(pickle.dumps(value))
    except Exception:
        what = "result" if ok else "error"
        return job_id, False, WriterJobFailed(f"{what} cannot be sent back: {type(value).__name__}: {value}")
    return job_id, ok, value
