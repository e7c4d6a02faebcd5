"""The GPU path against the CPU default, in one command of a few minutes on a machine with
CUDA: the eigensolver (auto: chebyshev on CUDA, arpack on the CPU) at 512² and 1024², a
shader forward (default weights, a 512² photo pair, warm spectra; the learned layers in
float32 and at the default precision), and a 50-step training
run (`experiment=stem`, its own process).

    python benchmarks/bench_gpu.py                  # writes bench_gpu.md beside the table
    python benchmarks/bench_gpu.py --out docs/gpu.md --cpu-threads 16

The table is markdown the README can take as it is. Without CUDA it says so in one line
and exits with status 2.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent


def synced(fn, device: torch.device, repeats: int = 3) -> float:
    """Median wall seconds of fn() after a warm-up, the GPU synchronised around each."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def photo(size: int) -> torch.Tensor:
    """scikit-image's astronaut at size², (3, size, size) in [0, 1]."""
    import numpy as np
    from PIL import Image
    from skimage import data

    pixels = np.asarray(Image.fromarray(data.astronaut()).resize((size, size), Image.BILINEAR))
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1).float() / 255


def eigensolver_rows(devices: dict[str, torch.device]) -> list[tuple[str, dict[str, float]]]:
    from spectral_resnet.spectral import compute_spectrum

    rows = []
    for size in (512, 1024):
        image = photo(size)
        seconds = {
            name: synced(
                lambda d=d, im=image: compute_spectrum(im.to(d), k=16, method="auto", cache=False),
                d,
                1,
            )
            for name, d in devices.items()
        }
        rows.append((f"eigensolver, {size}² image, k = 16 (auto)", seconds))
    return rows


def forward_row(devices: dict[str, torch.device], precision: str) -> tuple[str, dict[str, float]]:
    """A shader forward with the learned layers at `precision` (auto: bfloat16 on a device
    with bf16 units, each device deciding for itself)."""
    from spectral_resnet.config import ShaderConfig
    from spectral_resnet.model import SpectralShader

    target, sample = photo(512)[None], photo(512).flip(-1)[None]
    config = ShaderConfig(precision=precision)
    seconds = {}
    for name, device in devices.items():
        shader = SpectralShader.from_pretrained("default", config).to(device).eval()
        t, s = target.to(device), sample.to(device)
        with torch.no_grad():
            seconds[name] = synced(lambda m=shader, t=t, s=s: m(t, s), device)
    what = "shader forward, 512² pair, default weights and pattern, warm spectra"
    return f"{what}, precision={precision}", seconds


def training_row(threads: int) -> tuple[str, dict[str, float]]:
    """50 steps of `experiment=stem` in a process of its own per device (imports and data
    included: what a user waits for)."""
    seconds = {}
    for name, trainer in (("cuda", "gpu"), ("cpu", "cpu")):
        with tempfile.TemporaryDirectory() as tmp:
            command = [
                sys.executable,
                str(ROOT / "train.py"),
                "experiment=stem",
                f"trainer={trainer}",
                "trainer.max_steps=50",
                "trainer.limit_val_batches=0",
                "+trainer.limit_test_batches=0",
                f"threads={threads}",
                f"hydra.run.dir={tmp}",
            ]
            start = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True, cwd=ROOT)
            seconds[name] = time.perf_counter() - start
    return "training, 50 steps of experiment=stem (whole process)", seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench_gpu.md", help="where the markdown table goes")
    parser.add_argument("--cpu-threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("bench_gpu.py needs a CUDA device and torch sees none; run it on a GPU machine")
        return 2
    torch.set_num_threads(args.cpu_threads)
    devices = {"cuda": torch.device("cuda"), "cpu": torch.device("cpu")}
    rows = [
        *eigensolver_rows(devices),
        *(forward_row(devices, precision) for precision in ("float32", "auto")),
        training_row(args.cpu_threads),
    ]
    gpu = torch.cuda.get_device_name(0)
    lines = [
        f"{gpu} against {args.cpu_threads} CPU threads, torch {torch.__version__}",
        "",
        "| what | CUDA s | CPU s | CPU / CUDA |",
        "|---|---|---|---|",
        *(
            f"| {what} | {s['cuda']:.3f} | {s['cpu']:.3f} | **{s['cpu'] / s['cuda']:.1f}x** |"
            for what, s in rows
        ),
    ]
    table = "\n".join(lines)
    print(table)
    Path(args.out).write_text(table + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
