"""Hosts of the fault campaign's own: network namespaces that a cut takes off the network.

Each :class:`Host` is a network namespace joined to this one by a veth pair with two
link-local addresses (169.254.0.0/16, never routed off the pair). A process started
with :meth:`Host.wrap` runs inside it; :meth:`Host.cut` takes the pair's link down,
so no packet passes either way and no connection is closed (a partition, not a
crash), and :meth:`Host.heal` brings it up again.

The services the campaign's other processes use listen on 127.0.0.1 only, which a
namespace cannot reach: :class:`Relays` forwards a port on the host end of a pair
(``host_ip``) to such a service, and the cut severs that path too.

Namespaces need root and iproute2 (``ip netns``); :func:`namespaces_unavailable`
says why they cannot be made here, or None.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import threading

__all__ = ["Host", "Relays", "namespaces_unavailable"]


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check,
                          timeout=30)


def namespaces_unavailable() -> str | None:
    """Why a network namespace with a veth pair cannot be made here (None: it can)."""
    try:
        probe = Host(99)
    except FileNotFoundError:
        return "iproute2's `ip` is not installed"
    except subprocess.CalledProcessError as e:
        return f"`ip {' '.join(e.cmd[1:])}` failed: {e.stderr.strip() or e.returncode}"
    probe.close()
    return None


class Host:
    """One namespace and its veth pair; ``index`` picks its /30 (unique in this process)."""

    def __init__(self, index: int) -> None:
        tag = f"{os.getpid() % 100000}{index:02d}"
        self.name = f"cwf-{tag}"
        self.host_if, ns_if = f"cwh{tag}", f"cwn{tag}"
        # A /30 per (process, host): campaigns running at once rarely meet.
        block = (os.getpid() * 7 + index) % (200 * 64)
        third, fourth = 20 + block // 64, (block % 64) * 4
        self.host_ip, self.ip = f"169.254.{third}.{fourth + 1}", f"169.254.{third}.{fourth + 2}"
        _ip("netns", "add", self.name)
        try:
            _ip("link", "add", self.host_if, "type", "veth", "peer", "name", ns_if)
            _ip("link", "set", ns_if, "netns", self.name)
            _ip("addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
            _ip("link", "set", self.host_if, "up")
            _ip("-n", self.name, "addr", "add", f"{self.ip}/30", "dev", ns_if)
            _ip("-n", self.name, "link", "set", ns_if, "up")
            _ip("-n", self.name, "link", "set", "lo", "up")
        except Exception:
            self.close()
            raise
        self.is_cut = False

    def wrap(self, cmd: list[str]) -> list[str]:
        """``cmd`` run inside the namespace (``ip netns exec`` execs it: same pid)."""
        return ["ip", "netns", "exec", self.name, *cmd]

    def cut(self) -> None:
        _ip("link", "set", self.host_if, "down")
        self.is_cut = True

    def heal(self) -> None:
        _ip("link", "set", self.host_if, "up")
        self.is_cut = False

    def close(self) -> None:
        # Deleting the namespace deletes its end of the pair, and so the pair.
        _ip("link", "del", self.host_if, check=False)
        _ip("netns", "del", self.name, check=False)


class Relays:
    """TCP forwarders on one event loop thread: (listen address, port) -> target."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self._servers: list[asyncio.Server] = []

    def add(self, listen_ip: str, target: tuple[str, int], port: int = 0) -> int:
        """A relay on ``listen_ip`` (``port``, or a free one) to ``target``; its port."""
        async def start() -> int:
            server = await asyncio.start_server(
                lambda r, w: self._pipe(r, w, target), listen_ip, port)
            self._servers.append(server)
            return int(server.sockets[0].getsockname()[1])

        return asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    target: tuple[str, int]) -> None:
        try:
            up_r, up_w = await asyncio.open_connection(*target)
        except OSError:
            writer.close()
            return

        async def copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            with contextlib.suppress(OSError):
                dst.close()

        await asyncio.gather(copy(reader, up_w), copy(up_r, writer))

    def close(self) -> None:
        async def stop() -> None:
            for s in self._servers:
                s.close()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
