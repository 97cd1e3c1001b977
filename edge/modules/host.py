"""The module host (场景模块宿主): runs each enabled scenario module in its own worker process, feeds it the events
it subscribes to, checks and executes its proposals, judges its decisions and watches its KPIs.

Isolation: a module runs in `python -m edge.modules.worker` with its memory budget (RLIMIT_AS) and CPU budget
(RLIMIT_CPU) set in the child, and every call has a wall-clock timeout. A call that raises, times out, or a worker
that dies or runs out of memory: the worker is killed, the module is marked `failed` with the reason, and an alert
goes out on `storebox/<store>/alert/module`. Events reach a module through a bounded queue: when it is full the
event is dropped for that module (counted), so a slow or stuck module never holds up ingest or the writer.

Changes at run time: the host follows the database (`modules` table). A local change (API, CLI) calls `refresh()`;
an install by a signed package (the sync service) or by another process is noticed by the periodic refresh. Each
module whose version, state or files changed gets its worker restarted; nothing else is touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import shutil
import signal
import sqlite3
import sys
import tempfile
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from prometheus_client import CollectorRegistry, Counter, Gauge

from edge.ledger.audit import append_audit
from edge.ledger.errors import DomainError
from edge.modules import kpis as kpi_store
from edge.modules import store
from edge.modules.errors import ManifestInvalid, ModuleSourceInvalid
from edge.modules.manifest import Manifest, Subscription, load_manifest_file, parse_manifest

log = logging.getLogger("storebox.modules")
Clock = Callable[[], datetime]
ALERT_KIND = "module"
MAX_MODULE_FILES = 500
MAX_MODULE_BYTES = 64 * 2**20
MAX_PROPOSALS = 100
MAX_DECISION_JSON = 4096
STDERR_TAIL = 20
LINE_LIMIT = 8 * 2**20


class ModuleCallFailed(Exception):
    """A call to a worker failed: `kind` is raised, timeout, died, memory or start."""

    def __init__(self, kind: str, message: str, **detail: Any) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message
        self.detail = detail


# --- files ----------------------------------------------------------------------------------------------------


def tree_sha256(directory: Path) -> str:
    """One digest over every file of a module (relative path and content): tells a re-install from a change."""
    digest = hashlib.sha256()
    files = (p for p in directory.rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc")
    for path in sorted(files):
        rel = path.relative_to(directory).as_posix()
        if rel.startswith("."):
            continue  # the package machinery's own files (.manifest.json)
        digest.update(rel.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def check_source(directory: Path) -> Manifest:
    """A module directory ready to install: its manifest, its entry file, no links out, within size limits."""
    if not directory.is_dir():
        raise ModuleSourceInvalid(
            f"不是模块目录: {directory}", f"not a module directory: {directory}", path=str(directory)
        )
    manifest = load_manifest_file(directory / "manifest.yaml")
    files = [p for p in directory.rglob("*") if "__pycache__" not in p.parts]
    if len(files) > MAX_MODULE_FILES:
        raise ModuleSourceInvalid(
            f"模块文件超过 {MAX_MODULE_FILES} 个",
            f"more than {MAX_MODULE_FILES} files in the module",
            path=str(directory),
        )
    total = 0
    for path in files:
        if path.is_symlink():
            raise ModuleSourceInvalid(
                f"模块中不能有符号链接: {path.name}", f"a module holds no symbolic links: {path.name}", path=str(path)
            )
        if path.is_file():
            total += path.stat().st_size
    if total > MAX_MODULE_BYTES:
        raise ModuleSourceInvalid(
            f"模块文件超过 {MAX_MODULE_BYTES} 字节",
            f"module files larger than {MAX_MODULE_BYTES} bytes",
            path=str(directory),
        )
    if not (directory / manifest.entry).is_file():
        raise ModuleSourceInvalid(
            f"入口文件 {manifest.entry} 不存在",
            f"the entry file {manifest.entry} is missing",
            path=str(directory),
            entry=manifest.entry,
        )
    return manifest


def copy_version(source: Path, modules_dir: Path, name: str, version: int, sha256: str) -> tuple[Path, bool]:
    """Copy a module into <modules_dir>/<name>/<version>-<digest>/ (temp dir, then rename) and say whether it was
    copied now. The digest in the name means an installed version's files are never overwritten: other files under
    the same version land beside them (and the install is then refused)."""
    parent = modules_dir / name
    parent.mkdir(parents=True, exist_ok=True)
    final = parent / f"{version}-{sha256[:12]}"
    if final.is_dir() and tree_sha256(final) == sha256:
        return final, False
    tmp = Path(tempfile.mkdtemp(prefix=f".staging-{version}-", dir=parent))
    shutil.copytree(source, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    if final.exists():  # a copy that does not match its digest (a crash while copying): not in use
        shutil.rmtree(final)
    os.rename(tmp, final)
    return final, True


@dataclass(frozen=True, slots=True)
class Prepared:
    """A module copied into the modules dir, ready to commit; `created` when this install made the copy."""

    record: store.ModuleInstall
    created: bool

    def discard(self) -> None:
        """After a refused commit: remove the copy this install made (nothing refers to it)."""
        if self.created:
            shutil.rmtree(self.record.directory, ignore_errors=True)


def prepare_install(source: Path, modules_dir: Path, *, actor: str, origin: str = "local") -> Prepared:
    """Check a module directory and copy it into the modules dir: the install record to commit
    (`store.install_version` in one transaction). Blocking file work: run it in a thread from the event loop."""
    manifest = check_source(source)
    sha256 = tree_sha256(source)
    final, created = copy_version(source, modules_dir, manifest.name, manifest.version, sha256)
    record = store.ModuleInstall(
        name=manifest.name,
        version=manifest.version,
        source=origin,
        directory=str(final),
        manifest=json.dumps(manifest.to_dict(), ensure_ascii=False),
        sha256=sha256,
        actor=actor,
    )
    return Prepared(record, created)


def install_from_dir(
    source: Path, modules_dir: Path, transact: Callable[..., Any], now: str, *, actor: str, origin: str = "local"
) -> dict[str, Any]:
    """Prepare and commit one install; a refusal removes the copy it made and raises."""
    prepared = prepare_install(source, modules_dir, actor=actor, origin=origin)
    try:
        result: dict[str, Any] = transact(store.install_version, prepared.record, now)
    except BaseException:
        prepared.discard()
        raise
    return result


def shipped_dirs() -> list[Path]:
    """The modules shipped with the box (edge/modules/shipped/<name>/manifest.yaml)."""
    root = Path(__file__).parent / "shipped"
    return sorted(p for p in root.iterdir() if (p / "manifest.yaml").is_file()) if root.is_dir() else []


def install_shipped(
    modules_dir: Path, transact: Callable[..., Any], now: str, *, actor: str, names: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """Install (or leave as they are) the shipped modules, as local installs; `names` picks some by name."""
    results: list[dict[str, Any]] = []
    for directory in shipped_dirs():
        manifest = load_manifest_file(directory / "manifest.yaml")
        if names and manifest.name not in names and directory.name not in names:
            continue
        try:
            results.append(install_from_dir(directory, modules_dir, transact, now, actor=actor, origin="shipped"))
        except DomainError as error:
            results.append({"name": manifest.name, "version": manifest.version, "error": error.to_dict()})
    return results


# --- what runs in the writer ------------------------------------------------------------------------------------


def _depth(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 1000 else 0


def apply_proposals(
    conn: sqlite3.Connection,
    name: str,
    version: int,
    event: Mapping[str, Any],
    actions: Sequence[Mapping[str, Any]],
    decisions: Sequence[Mapping[str, Any]],
    now: str,
    config: Any,
) -> dict[str, Any]:
    """One call's checked proposals, in one transaction: its actions through the rules' action executor (a firing
    of `module:<name>` at `version`, each action audited as `module:<name>@<version>`) and its decisions."""
    from edge.rules.actions import execute_firing
    from edge.rules.engine import Firing, Origin

    result: dict[str, Any] = {"actions": 0, "decisions": 0, "firing_id": None, "state": None, "queued": False}
    if actions:
        firing = Firing(
            origin=Origin.module(name, version),
            event_key=str(event.get("key")),
            trigger_kind=str(event.get("kind")),
            subject=None if event.get("subject") is None else str(event.get("subject")),
            facts=event.get("facts") or {},
            actions=tuple(actions),
            # the depth of the signal that woke the module: a chain of signals through modules (and rules) is cut
            # at rules_signal_depth_max like one through rules only
            depth=_depth(event.get("depth")),
            at=datetime.fromisoformat(now),
        )
        outcome = execute_firing(conn, firing, datetime.fromisoformat(now), config)
        result.update(
            actions=0 if outcome.replayed else len(outcome.actions),
            firing_id=outcome.firing_id,
            state=outcome.state,
            queued=outcome.queued,
            replayed=outcome.replayed,
            signals=list(outcome.signals),
        )
    if decisions:
        result["decisions"] = store.record_decisions(conn, name, version, decisions, event.get("key"), now)
    append_audit(
        conn,
        ts=now,
        actor=f"module:{name}@{version}",
        device=None,
        action="module.propose",
        object=f"module:{name}",
        detail={
            "version": version,
            "event": event.get("key"),
            "actions": [a.get("action") for a in actions],
            "decisions": [d.get("key") for d in decisions],
            "firing_id": result["firing_id"],
        },
    )
    return result


# --- one worker process -----------------------------------------------------------------------------------------


class Worker:
    """One module's child process and its JSON-lines pipe; one call at a time."""

    def __init__(self, directory: Path, manifest: Manifest, db_path: Path, store_id: str, limits: Limits) -> None:
        self.directory = directory
        self.manifest = manifest
        self.db_path = db_path
        self.store_id = store_id
        self.limits = limits
        self.process: asyncio.subprocess.Process | None = None
        self.stderr_tail: deque[str] = deque(maxlen=STDERR_TAIL)
        self._stderr_task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    @property
    def timeout(self) -> float:
        return min(self.manifest.budget.timeout_seconds, self.limits.timeout_seconds_max)

    @property
    def memory_mb(self) -> int:
        return min(self.manifest.budget.memory_mb, self.limits.memory_mb_max)

    @property
    def cpu_seconds(self) -> int:
        return min(self.manifest.budget.cpu_seconds, self.limits.cpu_seconds_max)

    async def start(self, today: date) -> None:
        env = {
            # The box's own settings (a sync key, an SMTP password) are none of a module's business.
            **{k: v for k, v in os.environ.items() if not k.startswith("STOREBOX_")},
            # One thread per numeric library: the memory budget is for the module, not for thread arenas.
            "OPENBLAS_NUM_THREADS": "1",
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "NUMBA_NUM_THREADS": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",
        }
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "edge.modules.worker",
            str(self.directory),
            "--db",
            str(self.db_path),
            "--store",
            self.store_id,
            "--today",
            today.isoformat(),
            "--memory-mb",
            str(self.memory_mb),
            "--cpu-seconds",
            str(self.cpu_seconds),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            limit=LINE_LIMIT,
            start_new_session=True,  # a Ctrl-C to the box is the box's to handle; it stops its workers itself
        )
        self._stderr_task = asyncio.create_task(self._drain_stderr(), name=f"module-stderr-{self.manifest.name}")
        try:
            ready = await self._read(self.limits.start_timeout_seconds)
        except ModuleCallFailed as failed:
            await self.kill()
            raise ModuleCallFailed("start", failed.message, **failed.detail) from None
        if not ready.get("ok"):
            await self.kill()
            error = ready.get("error") or {}
            raise ModuleCallFailed(
                "start", f"{error.get('type')}: {error.get('message')}", stderr=list(self.stderr_tail)
            )

    async def _drain_stderr(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        with contextlib.suppress(Exception):
            while True:
                line = await self.process.stderr.readline()
                if not line:
                    return
                text = line.decode("utf-8", "replace").rstrip()
                self.stderr_tail.append(text[:500])
                log.debug("module %s: %s", self.manifest.name, text)

    async def _read(self, timeout: float) -> dict[str, Any]:
        process = self.process
        assert process is not None and process.stdout is not None
        try:
            line = await asyncio.wait_for(process.stdout.readline(), timeout)
        except TimeoutError:
            raise ModuleCallFailed("timeout", f"no answer within {timeout:g} s") from None
        except (ValueError, asyncio.LimitOverrunError):
            raise ModuleCallFailed("raised", f"an answer larger than {LINE_LIMIT} bytes") from None
        if not line:
            code = await _exit_code(process)
            if code is not None and code < 0 and -code == signal.SIGXCPU:
                raise ModuleCallFailed("timeout", "CPU budget exceeded (SIGXCPU)", exit_code=code)
            raise ModuleCallFailed(
                "died", f"the worker exited (code {code})", exit_code=code, stderr=list(self.stderr_tail)
            )
        try:
            reply = json.loads(line)
        except ValueError:
            raise ModuleCallFailed("raised", "the worker answered something that is not JSON") from None
        if not isinstance(reply, dict):
            raise ModuleCallFailed("raised", "the worker's answer is not an object")
        return reply

    async def call(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """Send one call and wait for its answer within the time budget; a failure kills the worker."""
        async with self._lock:
            process = self.process
            if process is None or process.stdin is None or process.returncode is not None:
                raise ModuleCallFailed("died", "the worker is not running")
            try:
                process.stdin.write(json.dumps(request, ensure_ascii=False, default=str).encode() + b"\n")
                await process.stdin.drain()
                reply = await self._read(self.timeout)
            except (BrokenPipeError, ConnectionResetError):
                await self.kill()
                raise ModuleCallFailed("died", "the worker's pipe closed", stderr=list(self.stderr_tail)) from None
            except ModuleCallFailed:
                await self.kill()
                raise
            if not reply.get("ok"):
                await self.kill()
                error = reply.get("error") or {}
                kind = "memory" if error.get("type") == "MemoryError" else "raised"
                raise ModuleCallFailed(
                    kind,
                    f"{error.get('type')}: {error.get('message')}",
                    traceback=error.get("traceback"),
                    logs=reply.get("logs"),
                )
            return reply

    async def kill(self) -> None:
        process = self.process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            with contextlib.suppress(Exception):
                await process.wait()
        if process is not None and process.stdin is not None:
            with contextlib.suppress(Exception):
                process.stdin.close()  # the last pipe the transport holds: it closes with it
        if self._stderr_task is not None:
            self._stderr_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._stderr_task

    async def stop(self) -> None:
        """Close its stdin (the worker exits), give it a moment, then kill it."""
        process = self.process
        if process is not None and process.returncode is None and process.stdin is not None:
            with contextlib.suppress(Exception):
                process.stdin.close()
            with contextlib.suppress(TimeoutError, Exception):
                await asyncio.wait_for(process.wait(), 2)
        await self.kill()


async def _exit_code(process: asyncio.subprocess.Process) -> int | None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(process.wait(), 2)
    return process.returncode


# --- the host ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Limits:
    """The box's own caps on any module's budget, and the host's queues and intervals."""

    queue_size: int = 1000
    timeout_seconds_max: float = 60.0
    memory_mb_max: int = 1024
    cpu_seconds_max: int = 120
    start_timeout_seconds: float = 30.0
    refresh_seconds: float = 2.0
    judge_interval_seconds: float = 3600.0


@dataclass(slots=True)
class Runner:
    """A running module: its worker, its queue and the task that feeds one event at a time."""

    name: str
    version: int
    directory: Path
    manifest: Manifest
    worker: Worker
    queue: asyncio.Queue[Mapping[str, Any]]
    task: asyncio.Task[None] | None = None
    handled: int = 0
    dropped: int = 0
    fingerprint: tuple[Any, ...] = ()
    schedules: dict[str, datetime] = field(default_factory=dict)
    started: asyncio.Event = field(default_factory=asyncio.Event)  # set once its worker runs (or failed to start)


class ModuleHost:
    """Runs the modules in force; see the module docstring."""

    def __init__(
        self,
        *,
        db_path: Path,
        modules_dir: Path,
        store_id: str,
        timezone: str,
        writer: Any,
        open_reader: Callable[[], sqlite3.Connection],
        clock: Clock,
        publisher: Any = None,
        registry: CollectorRegistry | None = None,
        limits: Limits = Limits(),
        teams: tuple[str, ...] = (),
        action_config: Any = None,
    ) -> None:
        self.db_path = db_path
        self.modules_dir = modules_dir
        self.store_id = store_id
        self.tz = ZoneInfo(timezone)
        self.writer = writer
        self.open_reader = open_reader
        self.clock = clock
        self.publisher = publisher
        self.limits = limits
        self.teams = teams
        if action_config is None:
            from edge.rules.actions import ActionConfig

            action_config = ActionConfig(store_id=store_id, teams=teams)
        self.action_config = action_config
        self.signal_sink: Callable[[Any], Any] | None = None  # where signals raised by emit_signal go (the rules)
        self.runners: dict[str, Runner] = {}
        self.dropped: dict[str, int] = {}
        self.alerts: list[dict[str, Any]] = []
        self._refresh_lock = asyncio.Lock()
        self._refresh_wanted = asyncio.Event()
        self._ledger_queue: asyncio.Queue[int] = asyncio.Queue(maxsize=limits.queue_size)
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping: set[Worker] = set()
        self._alert_seq = 0
        registry = registry or CollectorRegistry()
        self.m_calls = Counter(
            "storebox_module_calls", "Calls to scenario modules", ["module", "call", "result"], registry=registry
        )
        self.m_dropped = Counter(
            "storebox_module_events_dropped", "Events dropped on a module's full queue", ["module"], registry=registry
        )
        self.m_failures = Counter(
            "storebox_module_failures", "Module failures by kind", ["module", "kind"], registry=registry
        )
        self.m_running = Gauge("storebox_modules_running", "Module workers running", registry=registry)

    # --- time ---

    def today(self) -> date:
        return self.clock().astimezone(self.tz).date()

    def now(self) -> str:
        return self.clock().isoformat()

    # --- life cycle ---

    async def run(self) -> None:
        """Start the modules in force and keep following the database until cancelled."""
        try:
            await self.refresh()
            self._tasks = [
                asyncio.create_task(self._ledger_loop(), name="modules-ledger"),
                asyncio.create_task(self._schedule_loop(), name="modules-schedules"),
                asyncio.create_task(self._judge_loop(), name="modules-judge"),
            ]
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._refresh_wanted.wait(), self.limits.refresh_seconds)
                self._refresh_wanted.clear()
                try:
                    await self.refresh()
                except Exception:
                    log.exception("module refresh failed")
        finally:
            await self.close()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        for name in list(self.runners):
            await self._stop_runner(name)
        for worker in list(self._stopping):
            await worker.kill()
        self._stopping.clear()

    async def refresh(self) -> None:
        """Bring the running workers in line with the modules in force (start, stop, restart what changed)."""
        async with self._refresh_lock:
            conn = await asyncio.to_thread(self.open_reader)
            try:
                wanted = {m.name: m for m in store.in_force(conn) if m.state == "enabled"}
            finally:
                conn.close()
            for name in list(self.runners):
                runner = self.runners[name]
                want = wanted.get(name)
                if want is None or (want.version, want.directory) != (runner.version, str(runner.directory)):
                    await self._stop_runner(name)
            starting: list[Runner] = []
            for name, want in wanted.items():
                if name not in self.runners:
                    started = await self._start_runner(want)
                    if started is not None:
                        starting.append(started)
            if starting:  # the workers load side by side; the answer to a user waits until they run (or failed)
                waits = [asyncio.create_task(r.started.wait()) for r in starting]
                _, pending = await asyncio.wait(waits, timeout=self.limits.start_timeout_seconds + 5)
                for wait in pending:
                    wait.cancel()
            self.m_running.set(len(self.runners))

    def request_refresh(self) -> None:
        self._refresh_wanted.set()

    async def _start_runner(self, module: store.InForce) -> Runner | None:
        """Register the module's runner at once (events queue from now on) and start its worker in its task."""
        try:
            manifest = parse_manifest(json.loads(module.manifest))
        except (ManifestInvalid, ValueError) as exc:
            await self._fail(module.name, module.version, "start", f"manifest: {exc}", {})
            return None
        directory = Path(module.directory)
        runner = Runner(
            name=module.name,
            version=module.version,
            directory=directory,
            manifest=manifest,
            worker=Worker(directory, manifest, self.db_path, self.store_id, self.limits),
            queue=asyncio.Queue(maxsize=self.limits.queue_size),
        )
        self.runners[module.name] = runner
        runner.task = asyncio.create_task(self._feed(runner), name=f"module-{module.name}")
        return runner

    async def _stop_runner(self, name: str) -> None:
        runner = self.runners.pop(name, None)
        if runner is None:
            return
        self._stopping.add(runner.worker)  # close() finishes it if this stop is itself cancelled
        if runner.task is not None and runner.task is not asyncio.current_task():
            runner.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await runner.task
        await runner.worker.stop()
        self._stopping.discard(runner.worker)
        self.m_running.set(len(self.runners))
        log.info("场景模块已停止 / module stopped: %s v%d", name, runner.version)

    # --- events in ---

    def on_postings(self, results: Sequence[Any]) -> None:
        """Writer listener: the documents just posted, queued for the modules (never blocks; a full queue drops)."""
        if not self.runners:
            return
        for result in results:
            if getattr(result, "ok", False) and not getattr(result, "replayed", False) and result.document_id:
                try:
                    self._ledger_queue.put_nowait(int(result.document_id))
                except asyncio.QueueFull:
                    self._count_drop("*")

    def on_bus(self, topic: str, payload: bytes) -> None:
        """Broker tap: alerts the box publishes (`storebox/<store>/alert/<kind>`) as `alert` events."""
        parts = topic.split("/")
        if len(parts) != 4 or parts[2] != "alert" or parts[3] == ALERT_KIND or not self.runners:
            return
        if not any(s.event_kind == f"alert:{parts[3]}" for r in self.runners.values() for s in r.manifest.subscribes):
            return
        try:
            body = json.loads(payload)
        except ValueError:
            return
        from edge.rules.engine import alert_event

        event = alert_event(self.store_id, parts[3], body if isinstance(body, dict) else {}, self.clock())
        if event is not None:
            self.submit(event.to_json())

    def on_event(self, event: Any) -> None:
        """Listener of the rules runtime: every event the rules see (edge.rules.engine.Event), for the modules.
        Schedules are the host's own (each module's crons), so the rules' schedule events are not passed on."""
        if event.kind == "schedule" or not self.runners:
            return
        kind = f"{event.kind}:{event.name}"
        if any(r.manifest.subscribed(kind) for r in self.runners.values()):
            self.submit(event.to_json())

    def submit(self, event: Mapping[str, Any]) -> int:
        """Hand one event (as `Event.to_json()`) to every running module subscribed to it; how many took it."""
        kind = f"{event.get('kind')}:{event.get('name')}"
        taken = 0
        for runner in list(self.runners.values()):
            if not runner.manifest.subscribed(kind):
                continue
            try:
                runner.queue.put_nowait(event)
                taken += 1
            except asyncio.QueueFull:
                runner.dropped += 1
                self._count_drop(runner.name)
        return taken

    def _count_drop(self, name: str) -> None:
        self.dropped[name] = self.dropped.get(name, 0) + 1
        self.m_dropped.labels(module=name).inc()

    async def _ledger_loop(self) -> None:
        from edge.rules.engine import ledger_events

        while True:
            document_id = await self._ledger_queue.get()
            if not self.runners:
                continue
            try:
                conn = await asyncio.to_thread(self.open_reader)
                try:
                    events = await asyncio.to_thread(ledger_events, conn, document_id)
                finally:
                    conn.close()
            except sqlite3.Error:
                log.exception("module host: cannot read document %s", document_id)
                continue
            for event in events:
                self.submit(event.to_json())

    async def _schedule_loop(self) -> None:
        from apscheduler.triggers.cron import CronTrigger  # type: ignore[import-untyped]

        from edge.rules.engine import schedule_event

        while True:
            now = self.clock().astimezone(self.tz)
            wake = now + timedelta(seconds=self.limits.refresh_seconds)
            for runner in list(self.runners.values()):
                for sub in runner.manifest.subscribes:
                    if sub.kind != "schedule" or sub.cron is None:
                        continue
                    due = runner.schedules.get(sub.cron)
                    if due is None:
                        trigger = CronTrigger.from_crontab(sub.cron, timezone=self.tz)
                        due = trigger.get_next_fire_time(None, now)
                        runner.schedules[sub.cron] = due
                    if due is not None and due <= now:
                        event = schedule_event(sub.cron, due, due.date(), _is_holiday(due.date()))
                        try:
                            runner.queue.put_nowait(event.to_json())
                        except asyncio.QueueFull:
                            runner.dropped += 1
                            self._count_drop(runner.name)
                        trigger = CronTrigger.from_crontab(sub.cron, timezone=self.tz)
                        runner.schedules[sub.cron] = trigger.get_next_fire_time(due, due + timedelta(seconds=1))
                    nxt = runner.schedules.get(sub.cron)
                    if nxt is not None and nxt < wake:
                        wake = nxt
            delay = max(0.05, min((wake - self.clock().astimezone(self.tz)).total_seconds(), 60.0))
            await asyncio.sleep(delay)

    # --- a module at work ---

    async def _feed(self, runner: Runner) -> None:
        try:
            await runner.worker.start(self.today())
        except (ModuleCallFailed, OSError) as exc:
            runner.started.set()
            failed = exc if isinstance(exc, ModuleCallFailed) else ModuleCallFailed("start", str(exc))
            await self.failed_call(runner, failed)
            return
        runner.started.set()
        log.info("场景模块已启动 / module started: %s v%d", runner.name, runner.version)
        while True:
            event = await runner.queue.get()
            try:
                await self.handle(runner, event)
            except ModuleCallFailed as failed:
                await self.failed_call(runner, failed)
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("module %s: event %s not handled", runner.name, event.get("key"))

    async def handle(self, runner: Runner, event: Mapping[str, Any]) -> dict[str, Any]:
        """One event through one module: its proposals checked, then executed in one writer transaction."""
        reply = await runner.worker.call({"call": "handle", "event": event, "today": self.today().isoformat()})
        self.m_calls.labels(module=runner.name, call="handle", result="ok").inc()
        runner.handled += 1
        for line in reply.get("logs") or []:
            log.info("module %s: %s", runner.name, line)
        actions, decisions, refused = self.check_proposals(runner.manifest, event, reply.get("proposals") or [])
        if refused:
            await self._record_failure(runner.name, runner.version, "proposal", refused[0], {"refused": refused})
        if not actions and not decisions:
            return {"actions": 0, "decisions": 0, "refused": len(refused)}
        try:
            result: dict[str, Any] = await self.writer.execute(
                apply_proposals,
                runner.name,
                runner.version,
                dict(event),
                actions,
                decisions,
                self.now(),
                self.action_config,
            )
        except DomainError as error:
            await self._record_failure(
                runner.name, runner.version, "proposal", f"{error.code}: {error.message_en}", error.to_dict()
            )
            return {"actions": 0, "decisions": 0, "refused": len(refused) + len(actions)}
        for raised in result.pop("signals", None) or []:
            if self.signal_sink is not None:
                with contextlib.suppress(Exception):
                    self.signal_sink(raised)
        return {**result, "refused": len(refused)}

    def check_proposals(
        self, manifest: Manifest, event: Mapping[str, Any], proposals: Sequence[Any]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]:
        """Split a module's proposals into actions it may take (catalogue-checked) and decisions; list the refused."""
        from edge.rules.catalogue import validate_action
        from edge.rules.errors import RuleInvalid

        kind = f"{event.get('kind')}:{event.get('name')}"
        sub: Subscription | None = next((s for s in manifest.subscribes if s.event_kind == kind), None)
        actions: list[dict[str, Any]] = []
        decisions: list[dict[str, Any]] = []
        refused: list[str] = []
        for index, proposal in enumerate(list(proposals)[:MAX_PROPOSALS]):
            if not isinstance(proposal, Mapping):
                refused.append(f"proposal {index}: not an object")
                continue
            spec = {k: v for k, v in proposal.items() if k != "decision"}
            if spec:
                action = spec.get("action")
                if action not in manifest.may:
                    refused.append(f"proposal {index}: action {action!r} is not in the manifest's `may`")
                    continue
                if sub is None:
                    refused.append(f"proposal {index}: the module is not subscribed to {kind}")
                    continue
                try:
                    validate_action(spec, sub.where(self.teams))
                except RuleInvalid as exc:
                    refused.append(f"proposal {index}: {exc.message_en}")
                    continue
                actions.append(spec)
            if "decision" in proposal:
                decision, problem = _check_decision(proposal["decision"])
                if problem:
                    refused.append(f"proposal {index}: decision {problem}")
                elif decision is not None:
                    decisions.append(decision)
        if len(proposals) > MAX_PROPOSALS:
            refused.append(f"{len(proposals) - MAX_PROPOSALS} proposals over {MAX_PROPOSALS} ignored")
        return actions, decisions, refused

    # --- judging and KPIs ---

    async def _judge_loop(self) -> None:
        while True:
            await asyncio.sleep(self.limits.judge_interval_seconds)
            with contextlib.suppress(Exception):
                await self.judge_all()

    async def judge_all(self) -> dict[str, Any]:
        """Judge every running module's due decisions, record KPIs, act on broken thresholds."""
        done: dict[str, Any] = {}
        for name in list(self.runners):
            runner = self.runners.get(name)
            if runner is None:
                continue
            try:
                done[name] = await self.judge(runner)
            except ModuleCallFailed as failed:
                await self.failed_call(runner, failed)
                done[name] = {"failed": failed.kind}
        return done

    async def judge(self, runner: Runner) -> dict[str, Any]:
        today = self.today().isoformat()
        conn = await asyncio.to_thread(self.open_reader)
        try:
            due = store.due_decisions(conn, runner.name, runner.version, today, limit=500)
        finally:
            conn.close()
        outcomes: list[tuple[int, bool | None]] = []
        for decision in due:
            reply = await runner.worker.call({"call": "judge", "decision": decision, "today": today})
            self.m_calls.labels(module=runner.name, call="judge", result="ok").inc()
            outcome = reply.get("outcome")
            if isinstance(outcome, bool):
                outcomes.append((int(decision["id"]), outcome))
            elif outcome == "void":  # never judgeable (the store acted on it): closed, left out of the KPIs
                outcomes.append((int(decision["id"]), None))
        if outcomes:
            await self.writer.execute(store.record_outcomes, outcomes, self.now())
        kpi, reason = await self.check_kpis(runner.name, runner.version, runner.manifest, snapshot=bool(outcomes))
        return {"judged": len(outcomes), "pending": len(due) - len(outcomes), "kpis": kpi.to_dict(), "breach": reason}

    async def check_kpis(
        self, name: str, version: int, manifest: Manifest, *, snapshot: bool
    ) -> tuple[kpi_store.Kpi, str | None]:
        """Measure, keep a snapshot to report upstream, and roll back (or disable) when a threshold breaks."""
        conn = await asyncio.to_thread(self.open_reader)
        try:
            kpi = kpi_store.module_kpis(conn, name, version, manifest.kpis.window)
        finally:
            conn.close()
        if snapshot:
            await self.writer.execute(kpi_store.record_snapshot, name, version, kpi, self.now())
        reason = kpi_store.breach(kpi, manifest.kpis)
        if reason is not None:
            result = await self.writer.execute(
                store.rollback_or_disable, name, version, "module-host", self.now(), f"KPIs broke: {reason}"
            )
            if result.get("action") != "none":
                rolled = result["action"] == "rolled_back"
                to = result.get("to_version")
                await self.alert(
                    name,
                    version,
                    str(result.get("state", "disabled")),
                    "kpi",
                    f"场景模块 {name} v{version} 指标未达标，已{f'回滚到 v{to}' if rolled else '停用'}: {reason}",
                    f"scenario module {name} v{version} broke its KPIs and was "
                    f"{f'rolled back to v{to}' if rolled else 'disabled'}: {reason}",
                    kpis=kpi.to_dict(),
                )
                await self.refresh()
        return kpi, reason

    # --- failures and alerts ---

    async def failed_call(self, runner: Runner, failed: ModuleCallFailed) -> None:
        self.m_calls.labels(module=runner.name, call="any", result=failed.kind).inc()
        if runner.task is not None and runner.task is not asyncio.current_task():
            runner.task.cancel()
        self._stopping.add(runner.worker)
        await runner.worker.kill()
        self._stopping.discard(runner.worker)
        if self.runners.get(runner.name) is runner:
            self.runners.pop(runner.name, None)
            self.m_running.set(len(self.runners))
        await self._fail(runner.name, runner.version, failed.kind, failed.message, failed.detail)

    async def _fail(self, name: str, version: int, kind: str, message: str, detail: Mapping[str, Any]) -> None:
        self.m_failures.labels(module=name, kind=kind).inc()
        log.warning("场景模块失败，已停用 / module failed and disabled: %s v%d: %s: %s", name, version, kind, message)
        changed = await self._record_failure(name, version, kind, message, detail, disable=True)
        if changed:
            await self.alert(
                name,
                version,
                "failed",
                kind,
                f"场景模块 {name} v{version} 出错已停用 ({_KIND_ZH.get(kind, kind)}): {message}",
                f"scenario module {name} v{version} failed and was disabled ({kind}): {message}",
            )

    async def _record_failure(
        self, name: str, version: int, kind: str, message: str, detail: Mapping[str, Any], *, disable: bool = False
    ) -> bool:
        try:
            changed: bool = await self.writer.execute(
                store.record_failure, name, version, kind, message, dict(detail), self.now(), disable
            )
        except Exception:
            log.exception("module %s: failure not recorded", name)
            return False
        return changed

    async def alert(
        self, name: str, version: int, state: str, kind: str, message: str, message_en: str, **extra: Any
    ) -> None:
        """Publish on storebox/<store>/alert/module (the page shows it live); kept in `alerts` too."""
        self._alert_seq += 1
        now = self.clock()
        body = {
            "id": f"module-{name}-{version}-{int(now.timestamp() * 1000)}-{self._alert_seq}",
            "ts": now.isoformat(),
            "data": {
                "module": name,
                "version": version,
                "state": state,
                "kind": kind,
                "level": "warning",
                "subject": name,
                "message": message,
                "message_en": message_en,
                **extra,
            },
        }
        self.alerts.append(body)
        del self.alerts[:-100]
        if self.publisher is None:
            return
        from edge.bus.topics import alert_topic

        try:
            await self.publisher.publish(
                alert_topic(self.store_id, ALERT_KIND),
                json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode(),
                retain=False,
                qos=1,
            )
        except Exception:
            log.warning("module alert not published (broker down?): %s", message_en)

    # --- what users do (API, CLI): each a writer transaction, then the workers follow ---

    async def install_dir(self, source: Path, *, actor: str, origin: str = "local") -> dict[str, Any]:
        """Install a module from a directory (copied into modules_dir/<name>/<version>) and start it."""
        prepared = await asyncio.to_thread(prepare_install, source, self.modules_dir, actor=actor, origin=origin)
        try:
            result: dict[str, Any] = await self.writer.execute(store.install_version, prepared.record, self.now())
        except BaseException:
            await asyncio.to_thread(prepared.discard)
            raise
        await self.refresh()
        return result

    async def set_enabled(self, name: str, enabled: bool, *, actor: str) -> dict[str, Any]:
        state = "enabled" if enabled else "disabled"
        result: dict[str, Any] = await self.writer.execute(store.set_state, name, state, actor, self.now(), None)
        await self.refresh()
        return result

    async def rollback(self, name: str, *, actor: str, reason: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = await self.writer.execute(store.rollback_module, name, actor, self.now(), reason)
        await self.refresh()
        return result

    async def remove(self, name: str, *, actor: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.writer.execute(store.remove_by_user, name, actor, self.now())
        await self.refresh()
        return result

    # --- reads for the API and the page ---

    def runtime_of(self, name: str) -> dict[str, Any]:
        runner = self.runners.get(name)
        return {
            "running": runner is not None,
            "pid": runner.worker.process.pid if runner and runner.worker.process else None,
            "queued": runner.queue.qsize() if runner else 0,
            "handled": runner.handled if runner else 0,
            "dropped": self.dropped.get(name, 0),
        }


def _check_decision(value: object) -> tuple[dict[str, Any] | None, str | None]:
    if not isinstance(value, Mapping):
        return None, "must be an object {key, subject, predicted, check_on}"
    key = value.get("key")
    if not isinstance(key, str) or not 1 <= len(key) <= 200:
        return None, "key must be text of 1..200 characters"
    check_on = value.get("check_on")
    try:
        day = date.fromisoformat(str(check_on))
    except ValueError:
        return None, f"check_on must be a date YYYY-MM-DD, not {str(check_on)[:40]!r}"
    subject = value.get("subject")
    if subject is not None and (not isinstance(subject, str | int) or len(str(subject)) > 200):
        return None, "subject must be text of at most 200 characters"
    predicted = value.get("predicted")
    try:
        text = json.dumps(predicted, ensure_ascii=False)
    except (TypeError, ValueError):
        return None, "predicted must be plain JSON"
    if len(text) > MAX_DECISION_JSON:
        return None, f"predicted larger than {MAX_DECISION_JSON} characters"
    return {
        "key": key,
        "subject": None if subject is None else str(subject),
        "predicted": predicted,
        "check_on": day.isoformat(),
    }, None


def _is_holiday(day: date) -> bool:
    try:
        from chinese_calendar import is_holiday  # type: ignore[import-untyped]

        return bool(is_holiday(day))
    except (ImportError, NotImplementedError):
        return False


_KIND_ZH = {"raised": "抛出异常", "timeout": "超时", "died": "进程退出", "memory": "内存超限", "start": "无法启动"}


def build_module_host(
    settings: Any,
    writer: Any,
    publisher: Any,
    open_reader: Callable[[], sqlite3.Connection],
    clock: Clock,
    registry: CollectorRegistry | None = None,
) -> ModuleHost:
    """The host as the composition root builds it from settings."""
    return ModuleHost(
        db_path=Path(settings.db_path),
        modules_dir=modules_dir_of(settings),
        store_id=settings.store_id,
        timezone=settings.timezone,
        writer=writer,
        open_reader=open_reader,
        clock=clock,
        publisher=publisher,
        registry=registry,
        limits=Limits(
            queue_size=settings.modules_queue_size,
            timeout_seconds_max=settings.modules_timeout_seconds_max,
            memory_mb_max=settings.modules_memory_mb_max,
            cpu_seconds_max=settings.modules_cpu_seconds_max,
            start_timeout_seconds=settings.modules_start_timeout_seconds,
            refresh_seconds=settings.modules_refresh_seconds,
            judge_interval_seconds=settings.modules_judge_interval_seconds,
        ),
        teams=tuple(getattr(settings, "rule_teams", ()) or ()),
        action_config=_action_config(settings),
    )


def _action_config(settings: Any) -> Any:
    from edge.rules.actions import ActionConfig

    try:
        return ActionConfig.from_settings(settings)
    except AttributeError:  # settings without the rules' section (tests that build a bare host)
        return ActionConfig(store_id=settings.store_id)


def modules_dir_of(settings: Any) -> Path:
    """Where local installs live: settings.modules_dir, or <data_dir>/modules."""
    configured = getattr(settings, "modules_dir", None)
    return Path(configured) if configured else Path(settings.data_dir) / "modules"
