"""Both directions of a pair at once: the reverse runs in a process forked beside this one,
on one thread, and this process keeps the others.

A direction is mostly serial work (the eigensolve, labelling, scipy) between torch ops too
small to keep two threads busy, so two directions side by side finish sooner than one
after the other on two threads (docs/benchmarks.md). Each process first solves one image's
spectrum, and the two meet before shading: the other image's spectrum is then read from
the spectrum cache, where the other process put it, not solved twice.

GNU OpenMP's thread pool does not survive a fork: a child that opens a parallel region on
several threads hangs, so the child runs torch on one thread (as PyTorch's DataLoader
workers do), and this process on the rest. Hence two or three threads: with more, one
direction on all of them but one would wait for the other on one, so they run one after
the other. Linux CPUs only (elsewhere, and on a GPU, one after the other too).
"""

from __future__ import annotations

import os
import pickle
import signal
import socket
import sys
from collections.abc import Callable
from typing import TypeVar

import torch

R = TypeVar("R")

MET = b"m"  # "my spectrum is solved": each process sends it once, before shading


class ChildLost(RuntimeError):
    """The forked direction ended without sending its result (killed, or out of memory)."""


def can_fork(device: torch.device, threads: int) -> bool:
    """Whether two directions run side by side: on a Linux CPU with two or three threads."""
    return device.type == "cpu" and threads in (2, 3) and sys.platform.startswith("linux")


def side_by_side(
    here: Callable[[], R],
    there: Callable[[], R],
    solve_here: Callable[[], object],
    solve_there: Callable[[], object],
    threads: int,
) -> tuple[R, R]:
    """(here(), there()), there() run in a forked child: each process first solves its
    spectrum (solve_*), they meet, then each shades. The child's result (or its exception)
    comes back pickled; a Ctrl-C or an error here kills the child. threads: the count to
    share out, one to the child (the module's docstring) and the rest here."""
    mine, theirs = socket.socketpair()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: never returns, whatever is raised in it
        try:
            mine.close()
            child(theirs, there, solve_there)
        finally:
            os._exit(1)
    theirs.close()
    try:
        torch.set_num_threads(max(1, threads - 1))
        with mine:
            solve_here()
            try:
                mine.sendall(MET)
                mine.recv(len(MET))
            except OSError:  # the child died first: its error comes below
                pass
            result = here()
            reply = receive(mine)
        _, status = os.waitpid(pid, 0)
        pid = 0
    finally:
        torch.set_num_threads(threads)
        if pid:  # an error or a Ctrl-C here: the child's direction is not wanted
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    if reply is None:
        killed = os.WIFSIGNALED(status)
        how = f"signal {os.WTERMSIG(status)}" if killed else f"exit code {os.WEXITSTATUS(status)}"
        if killed and os.WTERMSIG(status) == signal.SIGKILL:
            how += ", out of memory?"
        raise ChildLost(
            f"the reverse direction's process ended without a result ({how}); parallel=false "
            "runs the directions one after the other, in about two thirds of the memory"
        )
    ok, value = reply
    if not ok:
        raise value
    return result, value


def child(sock: socket.socket, there: Callable[[], R], solve: Callable[[], object]):
    """The forked process, on one thread: solve, meet, shade, send the result back and
    leave at once (os._exit: the parent's atexit handlers, buffers and Hydra's job are not
    the child's)."""
    # Ctrl-C reaches the whole process group: the parent reports it, the child just leaves
    # (wherever it is, so a KeyboardInterrupt never unwinds into the parent's code)
    signal.signal(signal.SIGINT, lambda *_: os._exit(130))
    code = 0
    try:
        torch.set_num_threads(1)
        solve()
        sock.sendall(MET)
        sock.recv(len(MET))
        reply = (True, there())
    except BaseException as err:  # noqa: BLE001 -- every failure goes to the parent
        reply = (False, err)
    try:
        data = pickle.dumps(reply)
        if not reply[0]:  # an exception whose arguments do not rebuild it fails here
            pickle.loads(data)
    except Exception:  # noqa: BLE001
        ok, value = reply
        text = "its result cannot be pickled" if ok else f"{type(value).__name__}: {value}"
        data = pickle.dumps((False, RuntimeError(f"the reverse direction failed: {text}")))
    try:
        sock.sendall(len(data).to_bytes(8, "little") + data)
    except OSError:  # the parent is gone
        code = 1
    os._exit(code)


def receive(sock: socket.socket) -> tuple[bool, object] | None:
    """The child's pickled (ok, result or exception), or None if it died before sending."""
    head = read_exactly(sock, 8)
    if head is None:
        return None
    data = read_exactly(sock, int.from_bytes(head, "little"))
    return None if data is None else pickle.loads(data)


def read_exactly(sock: socket.socket, size: int) -> bytes | None:
    """size bytes from the socket, or None at end of stream."""
    chunks, left = [], size
    while left:
        try:
            chunk = sock.recv(min(left, 1 << 20))
        except ConnectionResetError:
            return None
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)
