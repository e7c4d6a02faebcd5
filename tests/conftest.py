"""Shared fixtures: small deterministic images, and a private spectrum cache per test session."""

import os
import select
import signal
import subprocess
import time

import pytest
import torch

from spectral_resnet.data.procedural import curves, diagram, scene
from spectral_resnet.views import render


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Keep the tests' spectra out of the user's cache directory."""
    mp = pytest.MonkeyPatch()
    mp.setenv("SPECTRAL_RESNET_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(2)


@pytest.fixture
def smooth_image():
    """(3, 24, 24): blurred noise, distinct eigenvalues, so subspaces are well defined."""
    g = torch.Generator().manual_seed(0)
    noise = torch.rand(1, 3, 30, 30, generator=g)
    return torch.nn.functional.avg_pool2d(noise, 7, 1, 0)[0]


@pytest.fixture
def toof():
    return curves((48, 48), seed=3)


@pytest.fixture
def tone():
    return diagram((48, 48), seed=1)


@pytest.fixture
def photo():
    return scene((32, 40), seed=2)


@pytest.fixture
def view_pair():
    """(target, sample, flow, valid) of a smooth sample (3, H, W) and its render under a view:
    flow (H, W, 2) is the sample (x, y) each target pixel shows, valid where it shows one."""

    def make(view, shape: tuple[int, int] = (24, 32), seed: int = 0):
        h, w = shape
        g = torch.Generator().manual_seed(seed)
        sample = torch.nn.functional.interpolate(
            torch.rand(1, 3, h // 4, w // 4, generator=g), size=shape, mode="bilinear"
        )[0]
        ys, xs = torch.meshgrid(torch.arange(float(h)), torch.arange(float(w)), indexing="ij")
        at = torch.stack([(xs + 0.5) * 2 / w - 1, (ys + 0.5) * 2 / h - 1]).flatten(1)  # (2, n)
        source = torch.linalg.solve(view.theta(shape)[:, :2], at).unflatten(1, shape)
        flow = torch.stack([(source[0] + 1) * w / 2 - 0.5, (source[1] + 1) * h / 2 - 0.5], -1)
        return render(sample[None], view)[0], sample, flow, (source.abs() <= 1).all(0)

    return make


@pytest.fixture(autouse=True)
def cold_spectrum_memory():
    """Each test starts with the process's spectrum cache empty in memory: a spectrum that
    one test solved (the same picture, the same options) never answers another's solves."""
    from spectral_resnet.spectral import spectrum

    spectrum._DEFAULT_CACHE.memory.clear()


@pytest.fixture
def interrupt():
    """Run a command, send SIGINT once `marker` shows in its output (so the program, not the
    interpreter's start-up, gets it), drain the rest: (exit code, all output). The output is
    read all along, so a chatty program never blocks on a full pipe."""

    def run(cmd: list[str], marker: bytes, env: dict, timeout: float = 300.0, group=False):
        """group: SIGINT to the command's whole process group, as a terminal's Ctrl-C; no
        process of the group may outlive the command (a forked child it left running)."""
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            # a runner started in the background (`nohup ... &`) ignores SIGINT, and a child
            # would inherit that: Python then never raises KeyboardInterrupt
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
            start_new_session=group,
        )
        try:
            seen, deadline = b"", time.monotonic() + timeout
            while marker not in seen and time.monotonic() < deadline:
                if select.select([proc.stdout], [], [], 1.0)[0]:
                    chunk = os.read(proc.stdout.fileno(), 65536)
                    if not chunk:
                        break
                    seen += chunk
            assert marker in seen, seen.decode(errors="replace")[-3000:]
            if group:
                os.killpg(proc.pid, signal.SIGINT)
            else:
                proc.send_signal(signal.SIGINT)
            rest, _ = proc.communicate(timeout=timeout)
            if group:
                with pytest.raises(ProcessLookupError):
                    os.killpg(proc.pid, 0)
            return proc.returncode, (seen + rest).decode(errors="replace")
        finally:
            if proc.poll() is None:  # a failed test leaves nothing running
                proc.kill()
                proc.wait()

    return run
