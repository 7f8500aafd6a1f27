"""Serving the app: one process, or N worker processes on one port, and the graceful drain.

Drain (SIGTERM or SIGINT): the listening socket closes (new connections are refused), idle
keep-alive connections close, every request in flight gets up to
`server.shutdown_timeout_s` to finish, then the `cleanup_ctx` generators run (what buffers
flushes there) and the process exits 0. A second signal exits at once (status 1).

Workers (`server.workers` > 1): a supervisor forks N processes; each builds its own app (its
own database connections, HTTP session, caches, limiter) and binds the port with
SO_REUSEPORT, so the kernel spreads connections over them. The supervisor forwards
SIGTERM/SIGINT to every worker and waits for all of them to drain; a worker that dies is
replaced.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import multiprocessing
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from types import FrameType

from aiohttp import web

from service.api.access_log import AccessLogger
from service.api.protocol import ServiceRunner, server_options
from service.errors import ServiceUnavailable
from service.logs import flush_access_lines
from service.settings import Settings, SettingsError
from service.typedefs import policy_engine_key

log = logging.getLogger(__name__)

LoopFactory = Callable[[], asyncio.AbstractEventLoop] | None
# Exit status of a process that stopped on a second signal without draining.
EXIT_ABORTED = 1
# A replacement worker that fails to start is tried again after this many seconds (doubling).
RESTART_BACKOFF_S = (0.5, 30.0)


def listen_error(host: str, port: int, exc: OSError) -> SettingsError:
    reason = "the port is already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
    return SettingsError(f"server: cannot listen on {host}:{port}: {reason}")


def service_runner(app: web.Application, settings: Settings) -> ServiceRunner:
    """The runner `serve` uses: the service's request handler, access log and timeouts."""
    return ServiceRunner(
        app,
        handle_signals=False,
        shutdown_timeout=settings.server.shutdown_timeout_s,
        access_log_class=AccessLogger,
        **server_options(settings),
    )


async def serve_app(
    app: web.Application,
    settings: Settings,
    *,
    reuse_port: bool = False,
    on_ready: Callable[[], None] = lambda: None,
    parent_pid: int | None = None,
) -> None:
    """Serve `app` until SIGTERM/SIGINT (or, for a worker, until its supervisor is gone),
    then drain. A failed start-up also cleans up what had started."""
    host, port = settings.server.host, settings.server.port
    runner = service_runner(app, settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if stop.is_set():
            print("second signal: exiting without draining", file=sys.stderr, flush=True)
            os._exit(EXIT_ABORTED)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal)
    orphan_watch = asyncio.create_task(_watch_parent(parent_pid, stop)) if parent_pid else None
    try:
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port, reuse_port=reuse_port or None).start()
        except OSError as exc:
            raise listen_error(host, port, exc) from None
        on_ready()
        engine = app.get(policy_engine_key)
        digest = getattr(getattr(engine, "engine", engine), "digest", None)  # metered wrapper
        if digest is not None:  # which policy decides, from the first request on
            log.info("serving with policy digest %s", digest)
        await stop.wait()
        log.info("draining: no new connections; requests in flight may finish")
    finally:
        if orphan_watch is not None:
            orphan_watch.cancel()
        await runner.cleanup()  # sites, idle connections, in-flight requests, cleanup_ctx
        flush_access_lines()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


async def _watch_parent(parent_pid: int, stop: asyncio.Event) -> None:
    """A worker whose supervisor died (SIGKILL) drains instead of serving on unsupervised."""
    while os.getppid() == parent_pid:
        await asyncio.sleep(1.0)
    stop.set()


def run(
    settings: Settings,
    loop_factory: LoopFactory,
    *,
    reuse_port: bool = False,
    on_ready: Callable[[], None] = lambda: None,
    parent_pid: int | None = None,
) -> None:
    """Build the app and serve it on a fresh event loop (one process)."""
    from service.app import create_app

    app = create_app(settings)
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(
            serve_app(
                app, settings, reuse_port=reuse_port, on_ready=on_ready, parent_pid=parent_pid
            )
        )


def check_port_free(host: str, port: int) -> None:
    """Bind without SO_REUSEPORT, so a server already on the port (even one of ours, whose
    workers would otherwise join its SO_REUSEPORT group) is found before any worker starts."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise SettingsError(f"server: cannot listen on {host}:{port}: {exc.strerror}") from None
    for family, kind, proto, _, address in infos:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                raise listen_error(host, port, exc) from None


def per_worker_warnings(settings: Settings) -> list[str]:
    """What N workers change for the configuration: in-process state is per worker."""
    workers = settings.server.workers
    limits = settings.ratelimit
    if workers > 1 and limits.enabled and limits.url.startswith("memory://"):
        return [
            f"ratelimit.url is memory:// with {workers} workers: each keeps its own buckets, "
            f"so a caller may get up to {workers} x ratelimit.rate_per_s; use redis:// to "
            "share one bucket per caller"
        ]
    return []


def _worker_main(settings: Settings, loop_factory: LoopFactory, ready: Connection) -> None:
    """A worker process: its own app and resources, its own drain; exit 2 on a start-up
    error (already reported on stderr in one line), 1 when a dependency is down."""
    os.setpgrp()  # a terminal's Ctrl-C reaches the supervisor only, which forwards it once
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the supervisor's handlers
    signal.signal(signal.SIGINT, signal.default_int_handler)
    parent = os.getppid()

    def on_ready() -> None:
        ready.send(os.getpid())
        ready.close()

    try:
        run(settings, loop_factory, reuse_port=True, on_ready=on_ready, parent_pid=parent)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    except ServiceUnavailable as exc:
        print(f"error: {exc.detail}", file=sys.stderr, flush=True)
        sys.exit(1)


class Supervisor:
    """Starts the workers one after the other, replaces one that dies, forwards a stop signal
    and waits for every worker to drain. A worker that fails to start before all are serving
    stops the lot (the configuration or a dependency is wrong, and every worker would fail
    the same way); a replacement that fails to start is tried again, backing off."""

    def __init__(
        self,
        settings: Settings,
        loop_factory: LoopFactory,
        count: int,
        announce: Callable[[], None] = lambda: None,
    ) -> None:
        self._settings = settings
        self._loop_factory = loop_factory
        self._count = count
        self._announce = announce
        self._context = multiprocessing.get_context("fork")
        self._workers: dict[int, BaseProcess] = {}  # slot -> process
        self._pending: dict[int, Connection] = {}  # slot -> its ready pipe, until it is ready
        self._retry_at: dict[int, float] = {}  # slot -> when to start it again
        self._backoff: dict[int, float] = {}
        self._signals: list[int] = []
        self._status = 0
        self._wakeup_r, self._wakeup_w = socket.socketpair()

    def run(self) -> int:
        host, port = self._settings.server.host, self._settings.server.port
        if port == 0:
            raise SettingsError("server.workers > 1 needs a fixed server.port (not 0)")
        check_port_free(host, port)
        for warning in per_worker_warnings(self._settings):
            log.warning("%s", warning)
        self._wakeup_w.setblocking(False)
        previous = {
            signum: signal.signal(signum, self._on_signal)
            for signum in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            self._start(0)  # the others once it serves: a start-up error is reported once
            return self._loop()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self._wakeup_r.close()
            self._wakeup_w.close()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals.append(signum)
        with contextlib.suppress(OSError):
            self._wakeup_w.send(b"\0")

    def _start(self, slot: int) -> None:
        receive, send = self._context.Pipe(duplex=False)
        process = self._context.Process(
            target=_worker_main,
            args=(self._settings, self._loop_factory, send),
            name=f"customers-api worker {slot}",
        )
        process.start()
        send.close()
        self._workers[slot] = process
        self._pending[slot] = receive

    def _loop(self) -> int:
        announced = False
        stopping = False
        while self._workers or (self._retry_at and not stopping):
            timeout = None
            if self._retry_at and not stopping:
                timeout = max(0.0, min(self._retry_at.values()) - time.monotonic())
            ready = wait(
                [
                    self._wakeup_r,
                    *self._pending.values(),
                    *(p.sentinel for p in self._workers.values()),
                ],
                timeout,
            )
            if self._wakeup_r in ready:
                with contextlib.suppress(BlockingIOError):
                    self._wakeup_r.recv(64)
            while self._signals:
                signum = self._signals.pop(0)
                if stopping:  # second signal: no drain
                    for process in self._workers.values():
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(process.pid or 0, signal.SIGKILL)
                    print("second signal: exiting without draining", file=sys.stderr, flush=True)
                    return EXIT_ABORTED
                stopping = True
                self._retry_at.clear()
                log.info("stopping: draining %d workers", len(self._workers))
                for process in self._workers.values():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(process.pid or 0, signum)
            for slot, conn in list(self._pending.items()):
                if conn in ready:
                    try:
                        conn.recv()
                    except (EOFError, OSError):
                        continue  # it died before serving: its sentinel says so below
                    conn.close()
                    del self._pending[slot]
                    self._backoff.pop(slot, None)
            for slot, process in list(self._workers.items()):
                if process.is_alive():
                    continue
                process.join()
                del self._workers[slot]
                pipe = self._pending.pop(slot, None)
                failed_to_start = pipe is not None
                if pipe is not None:
                    pipe.close()
                code = process.exitcode
                if stopping:
                    if code != 0:
                        log.warning("worker %s ended with status %s", process.pid, code)
                        self._status = EXIT_ABORTED
                    continue
                if failed_to_start and not announced:
                    self._stop_all()
                    return code if code and code > 0 else 1
                log.warning("worker %s died (status %s): starting another", process.pid, code)
                if failed_to_start:  # a replacement that cannot start: try again later
                    delay = self._backoff.get(slot, RESTART_BACKOFF_S[0])
                    self._backoff[slot] = min(delay * 2, RESTART_BACKOFF_S[1])
                    self._retry_at[slot] = time.monotonic() + delay
                else:
                    self._start(slot)
            if not announced and not self._pending and not stopping:
                if len(self._workers) < self._count:
                    self._start(len(self._workers))
                else:
                    announced = True
                    self._announce()
            now = time.monotonic()
            for slot, at in list(self._retry_at.items()):
                if at <= now and not stopping:
                    del self._retry_at[slot]
                    self._start(slot)
        return self._status

    def _stop_all(self) -> None:
        for process in self._workers.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid or 0, signal.SIGTERM)
        for process in self._workers.values():
            process.join()
        self._workers.clear()
