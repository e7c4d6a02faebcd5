"""The hand-written image primitive against the library that also does the job:
`shading.gaussian_blur` against torchvision's `gaussian_blur`, at the sizes and widths the
shader runs it (Otsu's threshold is scikit-image's own).

    python benchmarks/bench_library.py

Prints one row per case: the library's and ours' median time, their ratio (library / ours:
above 1, ours is faster) and the largest difference of the results (blur: away from the
border, where both read the same pixels).
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF

from spectral_resnet.shading import gaussian_blur


def median_time(fn, repeats: int = 7) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def torchvision_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    r = max(1, int(np.ceil(3 * sigma)))
    return TF.gaussian_blur(x, [2 * r + 1, 2 * r + 1], [sigma, sigma])


def main() -> None:
    torch.manual_seed(0)
    rows = []
    for size, sigma, what in (
        (512, 1.0, "tokens"),
        (512, 2.0, "thicken t=2"),
        (512, 6.3, "thicken t=20"),
    ):
        x = torch.rand(1, 3, size, size)
        ours, lib = gaussian_blur(x, sigma), torchvision_blur(x, sigma)
        r = int(np.ceil(3 * sigma))
        diff = float((ours - lib)[..., r:-r, r:-r].abs().max())
        rows.append(
            (
                f"blur {size}^2 sigma {sigma} ({what})",
                median_time(lambda x=x, sigma=sigma: torchvision_blur(x, sigma)),
                median_time(lambda x=x, sigma=sigma: gaussian_blur(x, sigma)),
                diff,
            )
        )
    print(f"{'case':40s} {'library s':>10s} {'ours s':>10s} {'ratio':>7s} {'max diff':>9s}")
    for name, lib_t, ours_t, diff in rows:
        print(f"{name:40s} {lib_t:10.5f} {ours_t:10.5f} {lib_t / ours_t:7.2f} {diff:9.2e}")


if __name__ == "__main__":
    main()
