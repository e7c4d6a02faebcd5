import torch
import torch.nn.functional as F

from spectral_resnet.model import resize
from spectral_resnet.spectral import compute_spectrum, joint_bilateral_upsample, lift


def step(height: int, width: int) -> torch.Tensor:
    """Black left half, white right half: (3, H, W)."""
    image = torch.zeros(3, height, width)
    image[..., width // 2 :] = 1
    return image


def test_joint_bilateral_upsampling_keeps_constants_and_edges():
    """A constant stays exactly constant; a map that steps where the guide steps stays a
    sharp step at full resolution, where plain bilinear upsampling smears it."""
    small, big = step(8, 8), step(32, 32)
    const = joint_bilateral_upsample(torch.full((2, 8, 8), 0.3), small, big, rows=5)
    assert const.shape == (2, 32, 32) and torch.allclose(const, torch.full_like(const, 0.3))
    inside = small[:1]  # 1 on the right half
    lifted = joint_bilateral_upsample(inside, small, big, rows=7)
    assert (lifted - big[:1]).abs().max() < 1e-6
    bilinear = F.interpolate(inside[None], size=(32, 32), mode="bilinear", align_corners=False)
    assert (bilinear[0] - big[:1]).abs().max() > 0.2


def test_lifted_spectrum_matches_a_full_solve_on_a_clean_image():
    """A disc on a background, solved at 16² and lifted to 48²: the lifted, Rayleigh-Ritz
    refined low eigenvectors span the full solve's, with small residuals on the big graph."""
    yy, xx = torch.meshgrid(torch.arange(48.0), torch.arange(48.0), indexing="ij")
    disc = ((yy - 20) ** 2 + (xx - 28) ** 2 < 12**2).float()
    image = torch.stack([0.2 + 0.6 * disc, 0.3 + 0.2 * disc, 0.8 - 0.5 * disc])
    small = resize(image[None], (16, 16))[0]
    cut = dict(k=4, cache=False, floor=1e-6)  # a clean cut: the disc's mode stands apart
    full = compute_spectrum(image, **cut)
    raw = lift(compute_spectrum(small, **cut), small, image, refine=False)
    refined = lift(compute_spectrum(small, **cut), small, image)
    assert refined.evecs.shape == (48 * 48, 4) and refined.shape == (48, 48)
    assert torch.allclose(refined.evecs.T @ refined.evecs, torch.eye(4, dtype=torch.float64))
    fiedler = full.evecs[:, 1].double()
    assert abs(float(fiedler @ refined.evecs[:, 1])) > 0.99  # the disc's own mode
    assert (refined.evals >= full.evals - 1e-9).all()  # Ritz values bound the truth from above
    assert float(refined.evals[1]) < 2 * float(full.evals[1])
    assert refined.evals.sum() <= raw.evals.sum() + 1e-12  # the same span's optimal rotation
    assert refined.params["lifted_from"] == [16, 16]
