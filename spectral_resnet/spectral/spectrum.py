"""The `Spectrum` of an image (its k lowest Laplacian eigenpairs) and a two-level cache for it.

Spectra are the expensive part of the shader and never depend on learned weights, so every
spectrum is cached in memory and on disk, keyed by a hash of the pixels and of every graph
and solver parameter. Disk entries carry a checksum: a corrupted, truncated or stale file is
detected and recomputed, never trusted; writes are atomic (temp file + rename).

The disk cache lives in `default_cache_dir()/spectra` and holds at most
$SPECTRAL_RESNET_CACHE_GB gigabytes (default 2; 0: no disk cache): past that, the least
recently used entries go. A disk that is full or read-only costs a warning, never a run.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from spectral_resnet.io import remove_stale_temps, write_atomic
from spectral_resnet.spectral import descriptors
from spectral_resnet.spectral.eigensolvers import eigenpairs
from spectral_resnet.spectral.graph import check_image, grid_laplacian

log = logging.getLogger(__name__)
CACHE_VERSION = 2  # 2: the graph's weight floor
MEMORY_ENTRIES = 64
DEFAULT_CACHE_GB = 2.0


@dataclass
class Spectrum:
    """k lowest eigenpairs of one image's grid Laplacian, with what they were computed from."""

    evals: Tensor  # (k,) ascending
    evecs: Tensor  # (n, k) orthonormal columns, n = H * W in row-major pixel order
    degrees: Tensor  # (n,) weighted degree of each pixel
    boundary: Tensor  # (n,) boundary strength in [0, 1] (1 - weakest incident edge weight)
    shape: tuple[int, int]  # (H, W)
    params: dict = field(default_factory=dict)  # graph + solver parameters
    residuals: Tensor | None = None  # (k,) ||L v - lambda v||
    method: str = ""
    seconds: float = 0.0  # solve time (0 for a cache hit)

    @property
    def k(self) -> int:
        return self.evals.shape[0]

    @property
    def n(self) -> int:
        return self.evecs.shape[0]

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None):
        """A copy on another device / float dtype (eigenvalues stay float64)."""

        def move(t):
            return None if t is None else t.to(device=device, dtype=dtype or t.dtype)

        return Spectrum(
            self.evals.to(device),
            move(self.evecs),
            move(self.degrees),
            move(self.boundary),
            self.shape,
            self.params,
            None if self.residuals is None else self.residuals.to(device),
            self.method,
            self.seconds,
        )

    def project(self, signal: Tensor) -> Tensor:
        """Spectral coefficients Phi^T f of a signal (n,) or (n, m)."""
        return self.evecs.T @ signal.to(self.evecs.dtype)

    def reconstruct(self, coeffs: Tensor) -> Tensor:
        """Phi c: back from coefficients (k,) or (k, m) to pixels."""
        return self.evecs @ coeffs.to(self.evecs.dtype)

    def heat(self, signal: Tensor, t: float) -> Tensor:
        """Heat diffusion of a signal for time t through the low spectrum."""
        return descriptors.heat_diffusion(self.evals.to(self.evecs.dtype), self.evecs, signal, t)

    def hks(self, times: Tensor | None = None, count: int = 8) -> Tensor:
        """Heat kernel signature, (n, T); default times log-spaced over the spectrum."""
        evals = self.evals.to(self.evecs.dtype)
        times = descriptors.default_hks_times(evals, count) if times is None else times
        return descriptors.heat_kernel_signature(evals, self.evecs, times.to(self.evecs))

    def wks(self, energies: Tensor | None = None, sigma: float | None = None, count: int = 8):
        """Wave kernel signature, (n, E); default energies spread over log(lambda)."""
        evals = self.evals.to(self.evecs.dtype)
        default_e, default_sigma = descriptors.default_wks_energies(evals, count)
        energies = default_e if energies is None else energies.to(self.evecs)
        return descriptors.wave_kernel_signature(
            evals, self.evecs, energies, default_sigma if sigma is None else sigma
        )

    def localisation(self, share: float = 0.01) -> Tensor:
        """How much of each non-constant mode's squared mass sits on its top `share` of the
        pixels, (k - 1,): near 1 for a speck, a few percent for a mode spread over regions."""
        mass = self.evecs[:, 1:].double().square()
        mass = mass / mass.sum(0, keepdim=True).clamp_min(1e-300)
        top = max(1, round(share * self.n))
        return mass.topk(top, dim=0).values.sum(0)

    def grid(self, values: Tensor) -> Tensor:
        """(n, ...) per-pixel values -> (..., H, W) maps."""
        h, w = self.shape
        return values.reshape(h, w, -1).permute(2, 0, 1).squeeze(0)


# --------------------------------------------------------------------------- cache


def default_cache_dir() -> Path:
    """$SPECTRAL_RESNET_CACHE, else $XDG_CACHE_HOME/spectral_resnet, else ~/.cache/spectral_resnet."""
    env = os.environ.get("SPECTRAL_RESNET_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "spectral_resnet"


def cache_limit() -> int:
    """The disk cache's size cap in bytes, from $SPECTRAL_RESNET_CACHE_GB (default 2 GB)."""
    text = os.environ.get("SPECTRAL_RESNET_CACHE_GB", "").strip()
    try:
        gb = float(text) if text else DEFAULT_CACHE_GB
    except ValueError:
        gb = float("nan")
    if not 0 <= gb < 1e6:  # NaN fails too
        raise ValueError(
            f"SPECTRAL_RESNET_CACHE_GB must be a size in gigabytes >= 0 (0: no disk cache), "
            f"got {text!r}"
        )
    return int(gb * 2**30)


def cache_key(image: Tensor, params: dict) -> str:
    """sha256 of the pixels (float32, shape) and of every parameter."""
    pixels = image.detach().to("cpu", torch.float32).contiguous()
    h = hashlib.sha256()
    h.update(str(tuple(pixels.shape)).encode())
    h.update(pixels.numpy().tobytes())
    h.update(json.dumps(params, sort_keys=True, default=str).encode())
    h.update(f"v{CACHE_VERSION}".encode())
    return h.hexdigest()


def check_contents(tensors: dict[str, Tensor], shape: tuple[int, int], k: int) -> None:
    """A cache entry whose checksum holds can still be wrong (written by a buggy build, or
    edited): its shapes must fit the image and k, and every value must be finite."""
    n = shape[0] * shape[1]
    expected = {"evals": (k,), "evecs": (n, k), "degrees": (n,), "boundary": (n,)}
    for name, size in expected.items():
        if tuple(tensors[name].shape) != size:
            raise ValueError(f"{name} has shape {tuple(tensors[name].shape)}, expected {size}")
    bad = [name for name, t in tensors.items() if not torch.isfinite(t).all()]
    if bad:
        raise ValueError(f"non-finite values in {bad}")


def _checksum(tensors: dict[str, Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        h.update(name.encode())
        h.update(tensors[name].contiguous().numpy().tobytes())
    return h.hexdigest()


_TENSORS = ("evals", "evecs", "degrees", "boundary", "residuals")


class SpectrumCache:
    """In-memory LRU in front of a directory of checksummed `.pt` files, itself an LRU of at
    most `max_bytes` (None: `cache_limit()`, read at each write). A file's modification
    time is its last use: a hit touches it, and eviction takes the oldest first."""

    def __init__(
        self,
        directory: Path | str | None = None,
        memory_entries: int = MEMORY_ENTRIES,
        max_bytes: int | None = None,
    ):
        self.directory = Path(directory) if directory is not None else None
        self.memory: OrderedDict[str, Spectrum] = OrderedDict()
        self.memory_entries = memory_entries
        self.max_bytes = max_bytes
        self.warned = False  # one warning a process for a cache that cannot be written
        # bytes on disk per directory: counted at this process's first write there, then
        # kept up to date by its own writes, so a write does not list the whole directory;
        # a recount (and eviction) happens when the count would pass the limit
        self.counted: dict[Path, int] = {}

    @property
    def path(self) -> Path:
        return self.directory if self.directory is not None else default_cache_dir() / "spectra"

    def get(self, key: str) -> Spectrum | None:
        if key in self.memory:
            self.memory.move_to_end(key)
            return self.memory[key]
        spectrum = self._load(key)
        if spectrum is not None:
            self._remember(key, spectrum)
        return spectrum

    def put(self, key: str, spectrum: Spectrum, disk: bool = True) -> None:
        self._remember(key, spectrum)
        if disk:
            self._save(key, spectrum)

    def _remember(self, key: str, spectrum: Spectrum) -> None:
        self.memory[key] = spectrum
        self.memory.move_to_end(key)
        while len(self.memory) > self.memory_entries:
            self.memory.popitem(last=False)

    def _load(self, key: str) -> Spectrum | None:
        file = self.path / f"{key}.pt"
        if not file.exists():
            return None
        try:
            blob = torch.load(file, map_location="cpu", weights_only=True)
            tensors = {name: blob[name] for name in _TENSORS}
            if blob["version"] != CACHE_VERSION or blob["key"] != key:
                raise ValueError("stale entry")
            if blob["checksum"] != _checksum(tensors):
                raise ValueError("checksum mismatch")
            check_contents(tensors, tuple(blob["shape"]), json.loads(blob["params"])["k"])
            try:
                os.utime(file)  # used now: the last to be evicted
            except OSError:  # a read-only cache still serves
                pass
            return Spectrum(
                shape=tuple(blob["shape"]),
                params=json.loads(blob["params"]),
                method=blob["method"],
                **tensors,
            )
        except Exception as err:  # any failure means: do not trust it, recompute
            log.warning("spectrum cache file %s is unusable (%s); recomputing", file, err)
            file.unlink(missing_ok=True)
            return None

    def _save(self, key: str, spectrum: Spectrum) -> None:
        tensors = {name: getattr(spectrum, name).detach().cpu().contiguous() for name in _TENSORS}
        blob = dict(
            tensors,
            version=CACHE_VERSION,
            key=key,
            shape=list(spectrum.shape),
            params=json.dumps(spectrum.params, sort_keys=True, default=str),
            method=spectrum.method,
            checksum=_checksum(tensors),
        )
        try:
            limit = cache_limit() if self.max_bytes is None else self.max_bytes
            if limit <= 0:
                return
            folder = self.path
            folder.mkdir(parents=True, exist_ok=True)
            if folder not in self.counted:  # once a process: temps of crashed writers
                remove_stale_temps(folder, ".*.tmp")
            buffer = io.BytesIO()
            torch.save(blob, buffer)
            write_atomic(buffer.getvalue(), folder / f"{key}.pt")
            known, size = self.counted.get(folder), (folder / f"{key}.pt").stat().st_size
            if known is None or known + size > limit:
                self.evict(limit)
            else:
                self.counted[folder] = known + size
        except (OSError, RuntimeError, ValueError) as err:  # torch.save: RuntimeError on ENOSPC
            if not self.warned:
                self.warned = True
                reason = str(err).strip().splitlines()[-1] if str(err).strip() else repr(err)
                log.warning(
                    "cannot write the spectrum cache in %s (%s); continuing without it",
                    self.path,
                    reason,
                )

    def evict(self, limit: int) -> int:
        """Delete the least recently used entries until the cache holds at most `limit`
        bytes; returns how many went."""
        entries = []
        for file in self.path.glob("*.pt"):
            try:
                stat = file.stat()
            except OSError:  # another process evicted it
                continue
            entries.append((stat.st_mtime, stat.st_size, file))
        total, removed = sum(size for _, size, _ in entries), 0
        for _, size, file in sorted(entries, key=lambda e: e[0]):
            if total <= limit:
                break
            file.unlink(missing_ok=True)
            total -= size
            removed += 1
        self.counted[self.path] = total
        return removed


_DEFAULT_CACHE = SpectrumCache()


def compute_spectrum(
    image: Tensor,
    k: int = 16,
    method: str = "auto",
    *,
    tol: float | None = None,
    cache: bool | SpectrumCache = True,
    solver_options: dict | None = None,
    **graph_options,
) -> Spectrum:
    """Spectrum of one image (C, H, W) in [0, 1]: graph -> k lowest eigenpairs, through the cache.

    graph_options go to `grid_laplacian` (connectivity, sigma, sigma_scale, color, ...);
    solver_options to `eigenpairs` (arpack: shift, ordering; chebyshev: max_iter, ...).
    cache: True for the process-wide cache (disk under `default_cache_dir()`), a
        `SpectrumCache` for your own, False to always solve.
    """
    batch = check_image(image)
    if batch.shape[0] != 1:
        raise ValueError(f"compute_spectrum takes one image, got a batch of {batch.shape[0]}")
    op = grid_laplacian(batch, **graph_options)
    # the key leaves out the device: a spectrum belongs to the image and graph, and any
    # solver meets the same accuracy, so CPU dataloader workers can feed a CUDA model
    solver_options = dict(solver_options or {})
    params = dict(op.params, k=k, method=method, tol=tol, solver=solver_options)
    store = _DEFAULT_CACHE if cache is True else (cache or None)
    key = cache_key(batch, params) if store is not None else ""
    if store is not None and (hit := store.get(key)) is not None:
        return Spectrum(**{**hit.__dict__, "seconds": 0.0})
    start = time.perf_counter()
    pairs = eigenpairs(op, k, method, tol=tol, **solver_options)
    spectrum = Spectrum(
        evals=pairs.evals.cpu(),
        evecs=pairs.evecs.cpu(),
        degrees=op.degrees()[0].flatten().double().cpu(),
        boundary=op.boundary_strength()[0].flatten().double().cpu(),
        shape=(op.height, op.width),
        params=dict(params, solved_by=pairs.method),
        residuals=pairs.residuals.cpu(),
        method=pairs.method,
        seconds=time.perf_counter() - start,
    )
    if store is not None:
        store.put(key, spectrum)
    return spectrum
