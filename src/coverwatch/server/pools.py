"""Bulkheads: a separate, bounded pool of threads for each kind of blocking work.

asyncio's default pool (``asyncio.to_thread``) is shared by everything, so a
burst of one kind (argon2 password checks at 64 MiB each, notification sends
waiting on a slow address) would leave a device's SOS commit waiting for a
free thread. Each kind gets its own pool here:

* ``store`` (:func:`in_store`): event commits and alert writes; one writer at
  a time is what SQLite does anyway, a second thread serves the rest;
* ``passwords`` (:func:`check_password`): argon2 checks, at most
  ``PASSWORD_THREADS`` at once and ``PASSWORD_QUEUE`` waiting; beyond that
  :class:`Busy` (the caller answers 429 with ``Retry-After`` at once). On
  Linux its thread runs at the lowest CPU priority (nice 19), and so do the
  threads argon2 starts for its lanes (a new thread inherits it): when the
  cores are busy, the event loop and the store's commits always run first and
  a login waits. Only the hashing runs there, never a database call (a
  starved thread must not hold a connection or the write lock);
* ``notify`` (:func:`in_notify`): outbound sends (Apprise, webhooks); their
  retries wait on the event loop (``asyncio.sleep``), never in a thread;
* ``alarms`` (:func:`in_alarm`): reserved for device alarms (SOS, fall): the
  device lookup of an upload that carries an alarm, and the sends of an alarm's
  notifications, so they never queue behind ordinary uploads or lapse notices.

Reads and everything else stay on the default pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from coverwatch.errors import CoverwatchError

__all__ = ["PASSWORD_QUEUE", "PASSWORD_THREADS", "Busy", "check_password", "in_alarm",
           "in_notify", "in_store", "lowest_priority", "password_room", "pools"]

T = TypeVar("T")

# One argon2 check at a time (64 MiB, and its lanes use several cores): on a small machine a
# second would take the CPU the event loop needs for an SOS (bench/stress.py, logins).
PASSWORD_THREADS = 1
PASSWORD_QUEUE = 8  # waiting beyond the running one; more is refused (429)
LOWEST_PRIORITY = 19  # the password thread's nice value (Linux)
STORE_THREADS = 2
NOTIFY_THREADS = 8
ALARM_THREADS = 4


class Busy(CoverwatchError):
    """Too many password checks are waiting: try again after ``retry_after_s``."""

    def __init__(self, retry_after_s: int = 2) -> None:
        super().__init__("too many sign-ins are being checked; try again shortly")
        self.retry_after_s = retry_after_s


class _Pools:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._made: dict[str, ThreadPoolExecutor] = {}
        self.passwords_waiting = 0

    def get(self, name: str, threads: int,
            initializer: Callable[[], object] | None = None) -> ThreadPoolExecutor:
        with self._lock:
            pool = self._made.get(name)
            if pool is None:
                pool = self._made[name] = ThreadPoolExecutor(threads, f"cw-{name}",
                                                             initializer=initializer)
            return pool


def lowest_priority() -> None:
    """Put the calling thread (and the threads it starts) at the lowest CPU priority.

    Linux only: there the nice value belongs to each thread, named by its native id;
    elsewhere the same call would name a process, so nothing is done.
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), LOWEST_PRIORITY)


pools = _Pools()


async def _run(name: str, threads: int, fn: Callable[..., T], *args: Any,
               initializer: Callable[[], object] | None = None, **kwargs: Any) -> T:
    loop = asyncio.get_running_loop()
    call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
    return await loop.run_in_executor(pools.get(name, threads, initializer), call)


async def in_store(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a store write in the store's own pool."""
    return await _run("store", STORE_THREADS, fn, *args, **kwargs)


async def in_notify(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run one blocking send in the notifications' own pool."""
    return await _run("notify", NOTIFY_THREADS, fn, *args, **kwargs)


async def in_alarm(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run blocking work of a device alarm in the pool kept for alarms."""
    return await _run("alarms", ALARM_THREADS, fn, *args, **kwargs)


def password_room() -> None:
    """:class:`Busy` if a password check now would find the queue full (so a caller can
    refuse before any other work)."""
    if pools.passwords_waiting >= PASSWORD_THREADS + PASSWORD_QUEUE:
        raise Busy()


async def check_password(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a password check in its own small pool; :class:`Busy` when the queue is full."""
    password_room()
    pools.passwords_waiting += 1  # only touched on the event loop
    try:
        return await _run("passwords", PASSWORD_THREADS, fn, *args,
                          initializer=lowest_priority, **kwargs)
    finally:
        pools.passwords_waiting -= 1
