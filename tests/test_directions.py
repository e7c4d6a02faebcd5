"""Both directions side by side: the reverse in a forked child (spectral_resnet.directions)."""

import os
import signal
import sys
import time

import pytest
import torch

from spectral_resnet.directions import ChildLost, can_fork, side_by_side

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork: Linux only")


@pytest.fixture
def threads():
    """This process's torch threads, restored after side_by_side set its share."""
    threads = torch.get_num_threads()
    yield threads
    torch.set_num_threads(threads)


def test_each_side_solves_first_and_shades_after_the_meeting(tmp_path, threads):
    """Each process's solve is done before either shades (what one solved, the other reads
    from the cache), the child runs on one thread and this process on the rest (here after
    torch ran on several: the child must not hang), and the child's result comes back
    whole."""
    torch.set_num_threads(2)
    torch.randn(512, 512) @ torch.randn(512, 512)  # an OpenMP pool is running
    here_file, there_file = tmp_path / "here", tmp_path / "there"

    def shade(other):
        big = torch.arange(300_000, dtype=torch.float32)  # more than a pipe holds
        return other.read_text(), torch.get_num_threads(), os.getpid(), big

    here, there = side_by_side(
        lambda: shade(there_file),
        lambda _: shade(here_file),
        lambda: here_file.write_text("solved here"),
        lambda: there_file.write_text("solved there"),
        threads=3,
    )
    assert here[:2] == ("solved there", 2) and there[:2] == ("solved here", 1)
    assert there[2] != os.getpid() == here[2]
    assert torch.equal(there[3], torch.arange(300_000, dtype=torch.float32))


def test_the_childs_steps_are_ticks_here_all_before_its_result(threads):
    """The child draws nothing: each step it takes is one tick() in this process, and every
    tick has come when side_by_side returns (the bar is closed after it, on a whole line)."""
    ticks = []

    def steps(step):
        for _ in range(5):
            step()
        return "done"

    here, there = side_by_side(
        lambda: len(ticks), steps, lambda: None, lambda: None, 2, lambda: ticks.append(1)
    )
    assert there == "done" and len(ticks) == 5


def test_an_error_in_the_child_is_raised_here(threads):
    def fail():
        raise ValueError("target must have 3 channels (RGB), got 4")

    with pytest.raises(ValueError, match="3 channels"):
        side_by_side(lambda: 1, lambda _: fail(), lambda: None, lambda: None, threads=2)

    class Odd(Exception):  # an exception pickle cannot rebuild (a local class)
        pass

    def odd():
        raise Odd("no room for the shape")

    with pytest.raises(RuntimeError, match="reverse direction failed: Odd: no room"):
        side_by_side(lambda: 1, lambda _: odd(), lambda: None, lambda: None, threads=2)
    with pytest.raises(RuntimeError, match="reverse direction failed: its result cannot be"):
        side_by_side(lambda: 1, lambda _: lambda: 2, lambda: None, lambda: None, threads=2)


def test_a_child_that_dies_is_one_error(threads):
    with pytest.raises(
        ChildLost, match=r"without a result \(signal 9, out of memory\?\); parallel=false"
    ):
        side_by_side(lambda: 1, lambda _: os.kill(os.getpid(), 9), lambda: None, lambda: None, 2)
    with pytest.raises(ChildLost, match=r"ended without a result \(exit code 3\)"):
        side_by_side(lambda: 1, lambda _: None, lambda: None, lambda: os._exit(3), 2)


def test_a_ctrl_c_in_the_child_ends_it_where_it_is(threads):
    """SIGINT in the child (a terminal's Ctrl-C reaches both) exits it at once with 130: no
    KeyboardInterrupt unwinds into the code it shares with this process."""

    def interrupted():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(30)  # never reached: the handler has exited
        return "finished"

    start = time.monotonic()
    with pytest.raises(ChildLost, match=r"ended without a result \(exit code 130\)"):
        side_by_side(lambda: 1, lambda _: interrupted(), lambda: None, lambda: None, threads=2)
    assert time.monotonic() - start < 20


def test_an_error_here_kills_the_child_and_leaves_no_process(tmp_path, threads):
    pid_file = tmp_path / "pid"

    def sleeper():
        pid_file.write_text(str(os.getpid()))
        time.sleep(60)

    def fail():
        while not pid_file.exists():
            time.sleep(0.01)
        raise KeyboardInterrupt  # as Ctrl-C here

    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        side_by_side(fail, lambda _: sleeper(), lambda: None, lambda: None, threads=2)
    assert time.monotonic() - start < 30
    with pytest.raises(ProcessLookupError):  # killed and reaped: not even a zombie
        os.kill(int(pid_file.read_text()), 0)


def test_only_cpu_runs_on_two_or_three_threads_fork():
    assert can_fork(torch.device("cpu"), 2) and can_fork(torch.device("cpu"), 3)
    assert not can_fork(torch.device("cpu"), 1) and not can_fork(torch.device("cpu"), 4)
    assert not can_fork(torch.device("cuda"), 2)


def test_a_ctrl_c_in_the_middle_of_a_draw_leaves_the_other_bar_free():
    """SIGINT while this (main) thread draws its bar, inside tqdm's write lock: the
    KeyboardInterrupt comes once the draw is done, so the listener's thread can still draw
    the other direction's bar (a plain tqdm bar kept the lock, and the listener, which the
    main thread joins after a Ctrl-C, waited for it for ever)."""
    import io
    import threading

    from tqdm.std import TqdmDefaultWriteLock

    from spectral_resnet.runs import BlocksBar

    class Bar(BlocksBar):
        """Its own lock: should the hold fail, no other test's bar waits for it."""

    Bar.set_lock(TqdmDefaultWriteLock())

    class Terminal(io.StringIO):
        armed = False

        def write(self, text: str) -> int:
            if self.armed:  # in the middle of a draw: the signal's handler runs right here
                self.armed = False
                signal.raise_signal(signal.SIGINT)
            return super().write(text)

    terminal = Terminal()
    mine, theirs = (Bar(total=4, file=terminal, mininterval=0, position=i) for i in (0, 1))
    terminal.armed = True
    with pytest.raises(KeyboardInterrupt):
        mine.update()
    assert mine.n == 1 and not terminal.armed  # the draw was reached, and finished
    other = threading.Thread(target=theirs.update, daemon=True)
    other.start()
    other.join(timeout=10)
    assert not other.is_alive() and theirs.n == 1
    for bar in (mine, theirs):
        bar.close()
