import pytest
import torch

from spectral_resnet.spectral import Spectrum, SpectrumCache, compute_spectrum
from spectral_resnet.spectral import spectrum as spectrum_module


def test_project_reconstruct_round_trip(photo):
    spec = compute_spectrum(photo, k=10, cache=False)
    coeffs = torch.randn(10, 3, dtype=torch.float64)
    assert torch.allclose(spec.project(spec.reconstruct(coeffs)), coeffs, atol=1e-10)


def test_heat_diffusion_keeps_constant_mode_and_smooths(photo):
    spec = compute_spectrum(photo, k=10, cache=False)
    signal = torch.randn(spec.n, dtype=torch.float64)
    low = spec.reconstruct(spec.project(signal))
    assert torch.allclose(spec.heat(signal, 0.0), low, atol=1e-10)
    assert spec.heat(signal, 1e6).norm() < spec.heat(signal, 1.0).norm()
    null = spec.evecs[:, 0]
    assert torch.allclose(spec.heat(null, 50.0), null, atol=1e-8)


def random_orthogonal(m, gen):
    return torch.linalg.qr(torch.randn(m, m, generator=gen, dtype=torch.float64)).Q


def test_descriptors_invariant_to_signs_and_rotations_in_eigenspaces():
    gen = torch.Generator().manual_seed(0)
    n, k = 50, 6
    evecs = torch.linalg.qr(torch.randn(n, k, generator=gen, dtype=torch.float64)).Q
    evals = torch.tensor([0.0, 0.1, 0.1, 0.1, 0.5, 0.9], dtype=torch.float64)  # one 3-fold
    spec = Spectrum(evals, evecs, torch.ones(n), torch.zeros(n), (5, 10))
    mixed = evecs.clone()
    mixed[:, 1:4] = evecs[:, 1:4] @ random_orthogonal(3, gen)
    mixed = mixed * torch.tensor([1, -1, 1, -1, -1, 1], dtype=torch.float64)
    other = Spectrum(evals, mixed, torch.ones(n), torch.zeros(n), (5, 10))
    assert torch.allclose(spec.hks(), other.hks(), atol=1e-12)
    assert torch.allclose(spec.wks(), other.wks(), atol=1e-12)
    assert not torch.allclose(spec.evecs, other.evecs, atol=1e-3)  # the raw basis did change


def test_hks_rows_are_a_weighted_mean_of_squared_modes(photo):
    spec = compute_spectrum(photo, k=8, cache=False)
    hks = spec.hks(torch.tensor([0.0], dtype=torch.float64))
    assert torch.allclose(hks[:, 0], spec.evecs.pow(2).mean(1), atol=1e-12)


def test_cache_hit_miss_and_parameter_change(tmp_path, photo):
    cache = SpectrumCache(tmp_path)
    first = compute_spectrum(photo, k=6, cache=cache)
    assert first.seconds > 0
    again = compute_spectrum(photo, k=6, cache=cache)
    assert again.seconds == 0.0 and torch.equal(again.evecs, first.evecs)
    fresh = SpectrumCache(tmp_path)  # a new process: disk hit
    from_disk = compute_spectrum(photo, k=6, cache=fresh)
    assert from_disk.seconds == 0.0 and torch.equal(from_disk.evecs, first.evecs)
    for changed in [dict(k=7), dict(k=6, sigma=0.2), dict(k=6, connectivity=8)]:
        assert compute_spectrum(photo, cache=cache, **changed).seconds > 0
    other_pixels = photo.clone()
    other_pixels[0, 0, 0] += 0.01
    assert compute_spectrum(other_pixels, k=6, cache=cache).seconds > 0
    assert len(list(tmp_path.glob("*.pt"))) == 5
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("damage", ["truncate", "garbage", "tamper"])
def test_corrupted_cache_file_is_recomputed(tmp_path, photo, damage):
    compute_spectrum(photo, k=6, cache=SpectrumCache(tmp_path))
    (file,) = tmp_path.glob("*.pt")
    if damage == "truncate":
        file.write_bytes(file.read_bytes()[:100])
    elif damage == "garbage":
        file.write_text("not a tensor")
    else:  # a valid torch file whose numbers were changed behind the checksum's back
        blob = torch.load(file, weights_only=True)
        blob["evals"] = blob["evals"] + 1
        torch.save(blob, file)
    again = compute_spectrum(photo, k=6, cache=SpectrumCache(tmp_path))
    assert again.seconds > 0  # recomputed, not trusted
    assert again.evals[0].abs() < 1e-10
    assert compute_spectrum(photo, k=6, cache=SpectrumCache(tmp_path)).seconds == 0.0


def test_default_cache_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SPECTRAL_RESNET_CACHE", str(tmp_path / "x"))
    assert spectrum_module.default_cache_dir() == tmp_path / "x"
    monkeypatch.delenv("SPECTRAL_RESNET_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert spectrum_module.default_cache_dir() == tmp_path / "xdg" / "spectral_resnet"


def test_compute_spectrum_reports_shape_and_residuals(photo):
    spec = compute_spectrum(photo, k=5, cache=False)
    assert spec.shape == (32, 40) and spec.evecs.shape == (32 * 40, 5)
    assert spec.residuals.max() < 1e-8
    assert spec.grid(spec.evecs).shape == (5, 32, 40)


def test_solver_options_reach_the_solver_and_the_cache_key(tmp_path, photo):
    cache = SpectrumCache(tmp_path)
    mmd = compute_spectrum(photo, k=6, method="arpack", cache=cache)
    nd = compute_spectrum(
        photo, k=6, method="arpack", cache=cache, solver_options={"ordering": "nested_dissection"}
    )
    assert nd.seconds > 0  # a different key: solved again
    assert torch.allclose(nd.evals, mmd.evals, atol=1e-10)
    with pytest.raises(ValueError, match="unknown ordering"):
        compute_spectrum(
            photo, k=6, method="arpack", cache=False, solver_options={"ordering": "amd"}
        )


def test_cache_entry_with_a_valid_checksum_but_wrong_contents_is_recomputed(tmp_path, photo):
    import json

    from spectral_resnet.spectral.spectrum import SpectrumCache, _checksum, compute_spectrum

    cache = SpectrumCache(tmp_path)
    good = compute_spectrum(photo, k=4, cache=cache)
    (file,) = tmp_path.rglob("*.pt")
    blob = torch.load(file, weights_only=True)
    blob["evecs"] = torch.full_like(blob["evecs"], float("nan"))  # re-checksummed: looks valid
    names = ("evals", "evecs", "degrees", "boundary", "residuals")
    blob["checksum"] = _checksum({n: blob[n] for n in names})
    torch.save(blob, file)
    fresh = SpectrumCache(tmp_path)  # a new process: nothing in memory
    again = compute_spectrum(photo, k=4, cache=fresh)
    assert torch.isfinite(again.evecs).all() and again.seconds > 0  # recomputed, not trusted
    assert torch.allclose(again.evals, good.evals) and json.dumps(again.params)


def test_the_disk_cache_keeps_its_size_cap_by_evicting_the_least_recently_used(tmp_path):
    import os
    import time

    images = [torch.rand(3, 12, 12, generator=torch.Generator().manual_seed(i)) for i in range(5)]
    probe = SpectrumCache(tmp_path / "probe", max_bytes=2**30)
    compute_spectrum(images[0], k=4, cache=probe)
    entry = next((tmp_path / "probe").glob("*.pt")).stat().st_size
    cache = SpectrumCache(tmp_path / "c", max_bytes=3 * entry + entry // 2)  # room for three
    for image in images[:3]:
        compute_spectrum(image, k=4, cache=cache)
        for f in cache.path.glob("*.pt"):  # mtimes a second apart: the order is unambiguous
            os.utime(f, (f.stat().st_mtime - 1, f.stat().st_mtime - 1))
    time.sleep(0.01)
    cache.memory.clear()
    first = compute_spectrum(images[0], k=4, cache=cache)  # a disk hit: now the newest
    assert first.seconds == 0.0
    compute_spectrum(images[3], k=4, cache=cache)  # over the cap: the oldest unused goes
    sizes = [f.stat().st_size for f in cache.path.glob("*.pt")]
    assert len(sizes) == 3 and sum(sizes) <= cache.max_bytes
    cache.memory.clear()
    assert compute_spectrum(images[0], k=4, cache=cache).seconds == 0.0  # kept: used lately
    assert compute_spectrum(images[1], k=4, cache=cache).seconds > 0.0  # evicted


def test_writes_under_the_cap_do_not_recount_the_directory(tmp_path, monkeypatch):
    """The cache counts its directory at the first write, then adds its own writes: a
    training epoch's thousands of writes do not each list thousands of files."""
    images = [torch.rand(3, 10, 10, generator=torch.Generator().manual_seed(i)) for i in range(4)]
    cache = SpectrumCache(tmp_path, max_bytes=2**30)
    counts = []
    recount = cache.evict
    monkeypatch.setattr(cache, "evict", lambda limit: counts.append(limit) or recount(limit))
    for image in images:
        compute_spectrum(image, k=4, cache=cache)
    assert len(counts) == 1  # the first write only
    assert cache.counted[tmp_path] == sum(f.stat().st_size for f in tmp_path.glob("*.pt"))


def test_a_full_disk_is_one_warning_and_the_spectra_still_come(tmp_path, monkeypatch, caplog):
    def full(*args, **kwargs):
        raise RuntimeError(
            "[enforce fail at inline_container.cc:778] . PytorchStreamWriter "
            "failed writing file data/0: file write failed"
        )

    monkeypatch.setattr(spectrum_module.torch, "save", full)
    cache = SpectrumCache(tmp_path / "c")
    for seed in range(3):
        image = torch.rand(3, 10, 10, generator=torch.Generator().manual_seed(seed))
        assert compute_spectrum(image, k=4, cache=cache).k == 4
    warnings = [r for r in caplog.records if "cannot write the spectrum cache" in r.message]
    assert len(warnings) == 1 and not list(cache.path.glob("*"))  # no temp file left either


@pytest.mark.parametrize("value, files", [("0", 0), ("0.5", 1)])
def test_the_cache_size_comes_from_the_environment(tmp_path, monkeypatch, value, files):
    monkeypatch.setenv("SPECTRAL_RESNET_CACHE_GB", value)
    cache = SpectrumCache(tmp_path / "c")
    compute_spectrum(torch.rand(3, 10, 10), k=4, cache=cache)
    assert len(list((tmp_path / "c").glob("*.pt"))) == files
    monkeypatch.setenv("SPECTRAL_RESNET_CACHE_GB", "lots")
    with pytest.raises(ValueError, match="SPECTRAL_RESNET_CACHE_GB must be a size in gigabytes"):
        spectrum_module.cache_limit()


@pytest.mark.parametrize("name", ["rocket", "coins"])
def test_the_low_modes_of_a_photo_are_regions_not_specks(name):
    """Without a weight floor, a photo's texture cuts pixels almost free and the low modes
    sit on those specks; with the default floor, each mode spreads over regions."""
    from spectral_resnet.data.real import PHOTOS, data_dir
    from spectral_resnet.io import load_image
    from spectral_resnet.model import resize, work_shape

    photo = load_image(data_dir() / PHOTOS[name][0])
    small = resize(photo[None], work_shape(photo.shape[-2:], 64))[0]
    specks = compute_spectrum(small, k=8, cache=False, floor=1e-6).localisation()
    regions = compute_spectrum(small, k=8, cache=False).localisation()
    assert float(specks.median()) > 0.4 and float(regions.median()) < 0.1
    assert float(regions.max()) < 0.25


def test_localisation_knows_a_speck_from_a_smooth_mode():
    n = 400
    smooth = torch.stack([torch.ones(n), torch.linspace(-1, 1, n), torch.eye(n)[17]], 1)
    spectrum = Spectrum(
        torch.zeros(3), smooth / smooth.norm(dim=0), torch.ones(n), torch.zeros(n), (20, 20)
    )
    mass = spectrum.localisation()  # 1% of 400 pixels: the top 4
    assert float(mass[1]) == pytest.approx(1.0) and float(mass[0]) < 0.05
