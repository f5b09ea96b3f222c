"""A fast `coverwatch` for the documents' tests: the same commands, run by a process forked
from one that has already imported coverwatch, instead of a new Python per command.

A document's command line still runs in bash, as written (pipes, ``$(…)``, redirections,
``VAR=… coverwatch …``): only the `coverwatch` that bash finds is a small stdlib client.
It hands its argv, working directory, environment, umask and its standard input, output
and error (the descriptors themselves) to the server, which forks a child that runs the
CLI's ``main()`` in that directory and environment, ends as a process ends (atexit,
threads joined, buffers flushed) and whose exit status the client exits with. Each
command is thus still a process of its own, with its own state, started in milliseconds
rather than the second or more an import of coverwatch takes on a loaded machine.

The client passes SIGTERM, SIGINT and SIGHUP on to the command (``serve`` and ``demo`` are
stopped that way). A call with ``COVERWATCH_TEST_REAL=1`` in its environment execs the real
console script instead (the README's ``serve`` is run so once, as a reader runs it).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["REAL", "fork_server", "script", "shared_fork_server"]

REAL = Path(sys.executable).parent / "coverwatch"
ROOT = Path(__file__).resolve().parents[2]
_SHARED: list[Path] = []  # the bin directory of the ``forked_cli`` fixture's server
_HEADER = struct.Struct("!I")
_STATUS = struct.Struct("!i")

# The client: the Python standard library only, without site (-S) and the environment's
# Python variables (-E), so it starts in a few milliseconds.
_CLIENT = """#!{python} -SE
import json, os, signal, socket, struct, sys
argv = sys.argv[1:]
if os.environ.get("COVERWATCH_TEST_REAL") == "1":
    os.execv({real!r}, [{real!r}, *argv])
umask = os.umask(0)
os.umask(umask)
body = json.dumps({{"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ),
                   "umask": umask}}).encode()
s = socket.socket(socket.AF_UNIX)
s.connect({sock!r})
socket.send_fds(s, [struct.pack("!I", len(body))], [0, 1, 2])
s.sendall(body)


def read(n):
    got = b""
    while len(got) < n:
        part = s.recv(n - len(got))
        if not part:
            sys.exit(70)
        got += part
    return struct.unpack("!i", got)[0]


pid = read(4)
for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):  # the command's, not ours
    signal.signal(sig, lambda n, _: os.kill(pid, n))
status = read(4)
sys.exit(status if status >= 0 else 128 - status)
"""


def _recv_exactly(conn: socket.socket, n: int) -> bytes:
    got = b""
    while len(got) < n:
        part = conn.recv(n - len(got))
        if not part:
            raise EOFError
        got += part
    return got


def _preload() -> None:
    """Import what the commands import (the heavy part of a command's start)."""
    import importlib
    import pkgutil

    import coverwatch
    import coverwatch.cli

    for info in pkgutil.walk_packages(coverwatch.__path__, "coverwatch."):
        if ".migrations." in info.name:
            continue
        with contextlib.suppress(Exception):
            importlib.import_module(info.name)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot

    # Typer builds the click command from the functions' signatures at every call (about
    # half a second): build it once here, for every child (each gets its own copy).
    import typer.main

    built = typer.main.get_command(coverwatch.cli.app)
    for name in built.list_commands(None):  # type: ignore[attr-defined]
        built.get_command(None, name)  # type: ignore[attr-defined]  # sub-commands load lazily
    original = typer.main.get_command

    def get_command(typer_instance: typer.Typer) -> object:
        return built if typer_instance is coverwatch.cli.app else original(typer_instance)

    typer.main.get_command = get_command  # type: ignore[assignment]


def _run_child(conn: socket.socket, fds: list[int], request: dict[str, object]) -> None:
    """In the forked child: become the command's process and run the CLI (never returns:
    its SystemExit, or an uncaught exception, ends the interpreter as a process ends)."""
    conn.close()
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.chdir(str(request["cwd"]))
    env = request["env"]
    assert isinstance(env, dict)
    os.environ.clear()
    os.environ.update(env)
    umask = request["umask"]
    assert isinstance(umask, int)
    os.umask(umask)
    argv = request["argv"]
    assert isinstance(argv, list)
    sys.argv = ["coverwatch", *argv]
    from coverwatch.cli import main

    code: int | str | None = 0
    try:
        main()
    except SystemExit as e:
        code = e.code
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    # As the interpreter ends a process, without tearing down every module (which, in a
    # fork, would copy the parent's whole heap page by page as reference counts change).
    import atexit
    import threading

    threading._shutdown()  # type: ignore[attr-defined]  # joins the non-daemon threads
    atexit._run_exitfuncs()
    if isinstance(code, str):
        print(code, file=sys.stderr)
        code = 1
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code or 0)


def _handle(conn: socket.socket) -> None:
    """In a child of the server: read one request, fork the command, report its status."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the server ignores it: waitpid needs it
    msg, fds, _, _ = socket.recv_fds(conn, _HEADER.size, 3)
    (size,) = _HEADER.unpack(msg + _recv_exactly(conn, _HEADER.size - len(msg)))
    request = json.loads(_recv_exactly(conn, size))
    pid = os.fork()
    if pid == 0:
        _run_child(conn, fds, request)
    for fd in fds:
        os.close(fd)
    conn.sendall(_STATUS.pack(pid))
    # A client that goes (killed by a timeout, say) takes its command with it: a `serve`
    # must not outlive the test that started it.
    import select

    pidfd = os.pidfd_open(pid)
    while not select.select([conn, pidfd], [], [])[0].count(pidfd):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if not select.select([pidfd], [], [], 30)[0]:
            os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    with contextlib.suppress(OSError):
        conn.sendall(_STATUS.pack(os.waitstatus_to_exitcode(status)))
    os._exit(0)


def _serve(path: str) -> None:
    _preload()
    import gc

    gc.freeze()  # the children's collections leave the imported modules' pages shared
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(64)
    # Children are reaped by the kernel: the server never waits for them.
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    print("ready", flush=True)
    while True:
        conn, _ = listener.accept()
        if os.fork() == 0:
            listener.close()
            _handle(conn)
        conn.close()


@contextlib.contextmanager
def fork_server(env: dict[str, str]) -> Iterator[Path]:
    """Start the server; yield a directory whose ``coverwatch`` is its client."""
    tmp = Path(tempfile.mkdtemp(prefix="cwfork-"))
    sock = str(tmp / "s")
    proc = subprocess.Popen([sys.executable, __file__, sock], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready", "the fork server did not start"
        bin_dir = tmp / "bin"
        bin_dir.mkdir()
        client = bin_dir / "coverwatch"
        client.write_text(_CLIENT.format(python=sys.executable, real=str(REAL), sock=sock))
        client.chmod(0o755)
        yield bin_dir
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def shared_fork_server() -> Iterator[Path]:
    """A fork server of this tree's coverwatch whose client :func:`script` returns meanwhile
    (the ``forked_cli`` fixture of tests/conftest.py: one per pytest process)."""
    path = os.environ.get("PYTHONPATH")
    src = str(ROOT / "src")
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb",
           "PYTHONPATH": src if not path else f"{src}{os.pathsep}{path}"}
    with fork_server(env) as bin_dir:
        _SHARED.append(bin_dir)
        try:
            yield bin_dir
        finally:
            _SHARED.remove(bin_dir)


def script() -> Path:
    """The `coverwatch` a CLI test runs: the shared fork server's client while one runs,
    else the real console script."""
    return _SHARED[-1] / "coverwatch" if _SHARED else REAL


if __name__ == "__main__":
    _serve(sys.argv[1])
