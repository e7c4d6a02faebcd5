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

The child writes nothing to the terminal: its progress comes here as ticks, so this
process draws both bars and no line of the child's can land after this process's last.
"""

from __future__ import annotations

import os
import pickle
import signal
import socket
import sys
import threading
from collections.abc import Callable
from typing import TypeVar

import torch

R = TypeVar("R")

MET = b"m"  # "my spectrum is solved": each process sends it once, before shading
TICK = b"t"  # the child's direction finished a step (a block): its bar is drawn here
RESULT = b"r"  # followed by the pickled (ok, result or exception), its length first


class ChildLost(RuntimeError):
    """The forked direction ended without sending its result (killed, or out of memory)."""


def can_fork(device: torch.device, threads: int) -> bool:
    """Whether two directions run side by side: on a Linux CPU with two or three threads."""
    return device.type == "cpu" and threads in (2, 3) and sys.platform.startswith("linux")


def side_by_side(
    here: Callable[[], R],
    there: Callable[[Callable[[], None]], R],
    solve_here: Callable[[], object],
    solve_there: Callable[[], object],
    threads: int,
    tick: Callable[[], None] = lambda: None,
) -> tuple[R, R]:
    """(here(), there(step)), there run in a forked child: each process first solves its
    spectrum (solve_*), they meet, then each shades. Each step() the child calls runs tick()
    here, so this process draws both progress bars: one writer to the terminal, whatever
    either is doing when a Ctrl-C comes. The child's result (or its exception) comes back
    pickled; a Ctrl-C or an error here kills the child. threads: the count to share out,
    one to the child (the module's docstring) and the rest here."""
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
    listener = Listener(mine, tick, pid)
    listener.start()
    replied = False
    try:
        torch.set_num_threads(max(1, threads - 1))
        solve_here()
        try:
            mine.sendall(MET)
        except OSError:  # the child died first: its error comes below
            pass
        listener.met.wait()
        result = here()
        listener.heard.wait()
        replied = listener.reply is not None
    finally:
        torch.set_num_threads(threads)
        if not replied:  # an error or a Ctrl-C here, or a child gone without its reply
            listener.kill()
            listener.join()  # the child reaped, and no tick after this
        mine.close()
    if not replied:
        status = listener.status
        killed = os.WIFSIGNALED(status)
        how = f"signal {os.WTERMSIG(status)}" if killed else f"exit code {os.WEXITSTATUS(status)}"
        if killed and os.WTERMSIG(status) == signal.SIGKILL:
            how += ", out of memory?"
        raise ChildLost(
            f"the reverse direction's process ended without a result ({how}); parallel=false "
            "runs the directions one after the other, in about two thirds of the memory"
        )
    ok, value = listener.reply
    if not ok:
        raise value
    return result, value


class Listener(threading.Thread):
    """What the child sends, read as it comes: the meeting (met), each step (tick()), then
    its reply (heard; None if it ended first). The child is then reaped here, in the
    background: its exit (freeing its memory) takes 0.04 s that the files need not wait."""

    def __init__(self, sock: socket.socket, tick: Callable[[], None], pid: int):
        super().__init__(daemon=True)
        self.sock, self.tick, self.pid = sock, tick, pid
        self.met, self.heard = threading.Event(), threading.Event()
        self.reply: tuple[bool, object] | None = None
        self.status = 0  # the child's wait status, once reaped
        self.reaping = threading.Lock()  # a pid is killed only before it is reaped
        self.reaped = False

    def run(self) -> None:
        try:
            while kind := read_exactly(self.sock, 1):
                if kind == MET:
                    self.met.set()
                elif kind == TICK:
                    self.tick()
                elif kind == RESULT:
                    head = read_exactly(self.sock, 8)
                    data = head and read_exactly(self.sock, int.from_bytes(head, "little"))
                    self.reply = pickle.loads(data) if data else None
                    break
        finally:
            self.met.set()  # a child that died before the meeting: here goes on to its error
            self.heard.set()
            with self.reaping:
                self.status = os.waitpid(self.pid, 0)[1]
                self.reaped = True

    def kill(self) -> None:
        """Stop the child, unless it is reaped already (its pid may be another's by then)."""
        with self.reaping:
            if not self.reaped:
                os.kill(self.pid, signal.SIGKILL)


def child(
    sock: socket.socket, there: Callable[[Callable[[], None]], R], solve: Callable[[], object]
):
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
        reply = (True, there(lambda: sock.sendall(TICK)))
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
        sock.sendall(RESULT + len(data).to_bytes(8, "little") + data)
    except OSError:  # the parent is gone
        code = 1
    os._exit(code)


def read_exactly(sock: socket.socket, size: int) -> bytes | None:
    """size bytes from the socket, or None at end of stream."""
    chunks, left = [], size
    while left:
        try:
            chunk = sock.recv(min(left, 1 << 20))
        except OSError:  # reset by a child that died
            return None
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)
