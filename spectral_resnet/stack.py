"""The learned stack: a conv stem gives every pixel learned local features, and residual
layers refine the two token streams (target and sample) before the matching head.

    s  SpectralLayer  each image along its own graph: Phi g(Lambda) Phi^T V f, per head
    x  CrossLayer     each stream reads the other: linear (elu + 1) attention, multi-head

Every layer owns its projections and FFN and is pre-norm, nanoGPT's block:
`f = f + mix(norm(f))`, then `f = f + ffn(norm(f))`. Tokens are (B, n, d) in row-major
pixel order at the working resolution, as the hand-made tokens are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spectral_resnet.spectral import Spectrum

FILTER_BUMPS = 8  # Gaussian bumps over lambda / lambda_max that span each head's g(lambda)


class ConvStem(nn.Module):
    """Dilated 3x3 conv + GroupNorm + ReLU layers: learned local features, one per pixel.

    Each image is standardised per channel first, so brightness and contrast changes between
    the two images do not reach the features; GroupNorm keeps no running statistics, so a
    batch of one at inference behaves as in training.
    """

    def __init__(self, *, width: int = 64, dilations: tuple[int, ...] = (1, 2, 4, 8)):
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for d in dilations:
            layers += [
                nn.Conv2d(channels, width, 3, padding=d, dilation=d, padding_mode="reflect"),
                nn.GroupNorm(8 if width % 8 == 0 else 1, width),
                nn.ReLU(inplace=True),
            ]
            channels = width
        self.body = nn.Sequential(*layers)
        self.out = nn.Conv2d(width, width, 1)  # linear read-out: features may be negative
        # channels-last: oneDNN's convs run 1.6-1.8x faster on it on 2 cores at the 256²
        # working size, and no slower on the views' 64² batches or in training
        # (benchmarks/bench_stem.py); the features are the same to 1e-5
        for conv in [*layers[::3], self.out]:
            conv.weight.data = conv.weight.data.contiguous(memory_format=torch.channels_last)

    def maps(self, image: Tensor) -> Tensor:
        """(B, 3, H, W) in [0, 1] -> feature maps (B, width, H, W)."""
        mean = image.mean((2, 3), keepdim=True)
        std = image.std((2, 3), keepdim=True).clamp_min(1e-3)
        x = ((image - mean) / std).contiguous(memory_format=torch.channels_last)
        return self.out(self.body(x))

    def forward(self, image: Tensor) -> Tensor:
        """(B, 3, H, W) in [0, 1] -> tokens (B, H W, width)."""
        return self.maps(image).flatten(2).transpose(1, 2)


class FFN(nn.Module):
    """Per-token MLP, 2x wide: where a layer turns what it gathered into new features."""

    def __init__(self, *, width: int):
        super().__init__()
        self.up, self.down = nn.Linear(width, 2 * width), nn.Linear(2 * width, width)

    def forward(self, f: Tensor) -> Tensor:
        return self.down(F.gelu(self.up(f)))


class SpectralFilter(nn.Module):
    """Self-attention along an image's own graph: Phi g_h(Lambda) Phi^T (V f) for each head h.

    g_h is a learned response over the k lowest modes (a mix of bumps in lambda / lambda_max),
    so a head can pass the regions (low modes), the finer parts or the global mean. It costs
    O(n k d), never n x n, and is a function of the operator Phi g(Lambda) Phi^T alone:
    flipping an eigenvector's sign, or rotating a basis inside a repeated eigenvalue,
    leaves it unchanged.
    """

    def __init__(self, *, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.v, self.out = nn.Linear(width, width), nn.Linear(width, width)
        # the bumps overlap to a sum near 1.6: this start passes every mode at gain ~1,
        # the projection onto the regions; training shapes each head's band
        self.g = nn.Parameter(torch.full((heads, FILTER_BUMPS), 0.6))

    def response(self, evals: Tensor) -> Tensor:
        """Each head's gain per mode: evals (B, k) -> (B, heads, k)."""
        x = evals / evals[:, -1:].clamp_min(1e-12)  # (B, k) in [0, 1]
        centres = torch.linspace(0, 1, FILTER_BUMPS, device=evals.device, dtype=evals.dtype)
        basis = torch.exp(-(((x[..., None] - centres) * FILTER_BUMPS) ** 2))  # (B, k, J)
        return torch.einsum("hj,bkj->bhk", self.g, basis)

    def forward(self, f: Tensor, graph: ImageGraphs) -> Tensor:
        """f (B, n, d) on the images' graphs -> messages (B, n, d)."""
        v = self.v(f).unflatten(-1, (self.heads, -1))  # (B, n, H, d_h)
        coeff = torch.einsum("bnk,bnhe->bhke", graph.evecs, v)  # Phi^T V f: (B, H, k, d_h)
        coeff = coeff * self.response(graph.evals)[..., None]
        msg = torch.einsum("bnk,bhke->bnhe", graph.evecs, coeff)  # (B, n, H, d_h)
        return self.out(msg.flatten(2))


def positive_features(x: Tensor) -> Tensor:
    """elu + 1: the positive feature map that makes linear attention an average (the head's
    linear kernel uses it too). Written as exp(min(x, 0)) + max(x, 0), the same function and
    gradient for finite x: torch's CPU elu takes several times as long."""
    linear = F.relu(x)
    return (x - linear).exp() + linear


class LinearCrossAttention(nn.Module):
    """Multi-head linear attention of queries from one stream over keys of the other, with the
    positive (elu + 1) feature map and normaliser: an average of the other image's values,
    O(n d^2), so 65k-token images at the working size stay cheap."""

    def __init__(self, *, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q, self.k = nn.Linear(width, width), nn.Linear(width, width)
        self.v, self.out = nn.Linear(width, width), nn.Linear(width, width)

    def forward(
        self, f: Tensor, other: Tensor, values: Tensor | None = None, queries: Tensor | None = None
    ) -> Tensor:
        """f (B, n, d) reads other (B, m, d) -> (B, n, d). values / queries: what V and Q are
        taken from instead of other / f (the positional control keys on encoded tokens)."""
        q = positive_features(
            self.q(f if queries is None else queries).unflatten(-1, (self.heads, -1))
        )
        k = positive_features(self.k(other).unflatten(-1, (self.heads, -1)))  # (B, m, H, d_h)
        v = self.v(other if values is None else values).unflatten(-1, (self.heads, -1))
        kv = torch.einsum("bmhd,bmhe->bhde", k, v) / other.shape[1]  # (B, H, d_h, d_h)
        norm = torch.einsum("bnhd,bhd->bnh", q, k.mean(1)).clamp_min(1e-6)  # (B, n, H)
        out = torch.einsum("bnhd,bhde->bnhe", q, kv) / norm[..., None]
        return self.out(out.flatten(2))


def grid_encoding(shape: tuple[int, int], width: int, device=None) -> Tensor:
    """Fixed 2-D sinusoidal positions (h w, width): sin and cos of x and y (in [0, 1]) at
    width / 4 octaves, as DETR and LoFTR add to their tokens."""
    h, w = shape
    freqs = math.pi * 2.0 ** torch.arange(width // 4, device=device)  # (F,)
    ys, xs = torch.meshgrid(
        torch.linspace(0, 1, h, device=device),
        torch.linspace(0, 1, w, device=device),
        indexing="ij",
    )
    angles = torch.stack([xs, ys], -1).reshape(-1, 2, 1) * freqs  # (n, 2, F)
    return torch.cat([angles.sin(), angles.cos()], -1).reshape(h * w, -1)  # (n, 4 F)


class PositionalSelfAttention(nn.Module):
    """The non-spectral control for 's': multi-head linear self-attention over an image's
    tokens, with a 2-D positional encoding added to the queries' and keys' input."""

    def __init__(self, *, width: int, heads: int):
        super().__init__()
        if width % 4:
            raise ValueError(f"positional self-attention needs a width divisible by 4, got {width}")
        self.attn = LinearCrossAttention(width=width, heads=heads)

    def forward(self, f: Tensor, graph: ImageGraphs) -> Tensor:
        keyed = f + grid_encoding(graph.shape, f.shape[-1], f.device)
        return self.attn(f, keyed, values=f, queries=keyed)


MIXERS = {"spectral": SpectralFilter, "positional": PositionalSelfAttention}


class SpectralLayer(nn.Module):
    """'s': each stream along its own image (Phi g(Lambda) Phi^T, or the positional control),
    then an FFN."""

    def __init__(self, *, width: int, heads: int, mixer: str = "spectral"):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn, self.ffn = MIXERS[mixer](width=width, heads=heads), FFN(width=width)

    def stream(self, f: Tensor, graph: ImageGraphs) -> Tensor:
        f = f + self.attn(self.norm1(f), graph)
        return f + self.ffn(self.norm2(f))

    def forward(self, f_t: Tensor, f_s: Tensor, graphs: PairGraphs) -> tuple[Tensor, Tensor]:
        return self.stream(f_t, graphs.target), self.stream(f_s, graphs.sample)


class CrossLayer(nn.Module):
    """'x': each stream reads the other with the same weights (both ways, as LoFTR), then an
    FFN."""

    def __init__(self, *, width: int, heads: int):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn, self.ffn = LinearCrossAttention(width=width, heads=heads), FFN(width=width)

    def forward(self, f_t: Tensor, f_s: Tensor, graphs: PairGraphs) -> tuple[Tensor, Tensor]:
        a_t, a_s = self.norm1(f_t), self.norm1(f_s)
        f_t, f_s = f_t + self.attn(a_t, a_s), f_s + self.attn(a_s, a_t)
        return f_t + self.ffn(self.norm2(f_t)), f_s + self.ffn(self.norm2(f_s))


@dataclass(frozen=True)
class ImageGraphs:
    """A batch of images' eigenpairs and grid shape: what an 's' layer runs along."""

    evecs: Tensor  # (B, n, k) orthonormal columns
    evals: Tensor  # (B, k) ascending
    shape: tuple[int, int]  # (h, w), n = h w

    @classmethod
    def of(cls, spectra: list[Spectrum]) -> ImageGraphs:
        evecs = torch.stack([s.evecs for s in spectra])
        return cls(evecs, torch.stack([s.evals for s in spectra]).to(evecs.dtype), spectra[0].shape)

    def pooled(self, stride: int) -> ImageGraphs:
        """The modes averaged over stride x stride cells, rescaled so a smooth mode keeps unit
        norm: the graph the layers run along on a coarse grid."""
        if stride == 1:
            return self
        shape = coarse_shape(self.shape, stride)
        evecs = pooled(self.evecs, self.shape, stride) * math.sqrt(
            self.evecs.shape[1] / math.prod(shape)
        )
        return ImageGraphs(evecs, self.evals, shape)


@dataclass(frozen=True)
class PairGraphs:
    """The targets' and the samples' graphs."""

    target: ImageGraphs
    sample: ImageGraphs

    def pooled(self, stride: int) -> PairGraphs:
        return PairGraphs(self.target.pooled(stride), self.sample.pooled(stride))


def coarse_shape(shape: tuple[int, int], stride: int) -> tuple[int, int]:
    """The grid `stride` times coarser than `shape` (h, w), a partial cell at each far edge."""
    return -(-shape[0] // stride), -(-shape[1] // stride)


def pooled(f: Tensor, shape: tuple[int, int], stride: int) -> Tensor:
    """Row-major tokens (B, h w, d) averaged over stride x stride cells: (B, h' w', d). Where
    stride does not divide a side, adaptive pooling spreads the cells evenly (some overlap),
    so their centres stay where the bilinear upsampling puts them. The grid is viewed
    channels last, as the tokens lie: 35x faster than a transposed copy."""
    if stride == 1:
        return f
    grid = f.unflatten(1, shape).permute(0, 3, 1, 2)  # (B, d, h, w), channels last
    cells = F.adaptive_avg_pool2d(grid, coarse_shape(shape, stride))  # (B, d, h', w')
    return cells.permute(0, 2, 3, 1).flatten(1, 2)


def upsampled(f: Tensor, coarse: tuple[int, int], shape: tuple[int, int]) -> Tensor:
    """Coarse tokens (B, h' w', d) bilinearly back onto the (h, w) grid: (B, h w, d). The
    grids are viewed channels last, as the tokens lie: 17x faster than a transposed copy."""
    grid = f.unflatten(1, coarse).permute(0, 3, 1, 2)  # (B, d, h', w')
    fine = F.interpolate(grid, size=shape, mode="bilinear", align_corners=False)
    return fine.permute(0, 2, 3, 1).flatten(1, 2)


LAYERS = {"s": SpectralLayer, "x": CrossLayer}


class Stack(nn.Module):
    """Tokens of both images -> a shared embedding -> the layers in order -> a final norm.

    stride > 1 runs the layers on a grid that much coarser (LoFTR's coarse level): what they
    add to each cell is upsampled onto every token, so the stem's fine detail stays and the
    layers cost stride^2 times less.
    """

    def __init__(
        self,
        *,
        layers: str,
        dim: int,
        width: int,
        heads: int,
        mixer: str = "spectral",
        stride: int = 1,
    ):
        super().__init__()
        self.stride = stride
        self.embed = nn.Linear(dim, width)
        self.layers = nn.ModuleList(
            SpectralLayer(width=width, heads=heads, mixer=mixer)
            if c == "s"
            else CrossLayer(width=width, heads=heads)
            for c in layers
        )
        self.norm = nn.LayerNorm(width)

    @torch.no_grad()
    def pass_through(self, layers: list[int], embed: bool) -> None:
        """Make these layers identities (each residual branch's last projection zero) and, with
        `embed`, the embedding too where dim == width: a stack grown on a shallower model's
        weights then matches as that model did (up to the final norm) at step 0."""
        if embed and self.embed.in_features == self.embed.out_features:
            self.embed.weight.copy_(torch.eye(self.embed.out_features)), self.embed.bias.zero_()
        for i in layers:
            for branch in (self.layers[i].attn, self.layers[i].ffn):
                last = [m for m in branch.modules() if isinstance(m, nn.Linear)][-1]
                last.weight.zero_(), last.bias.zero_()

    def unmixed(self, f: Tensor) -> Tensor:
        """(B, n, dim) -> (B, n, width): the tokens as the stack would give them with no
        layers, each image on its own; cheap enough to score many views of an image."""
        return self.norm(self.embed(f))

    def forward(
        self,
        f_t: Tensor,
        f_s: Tensor,
        graphs: PairGraphs | None,
        shapes: tuple[tuple[int, int], tuple[int, int]],
    ) -> tuple[Tensor, Tensor]:
        """(B, n_t, dim), (B, n_s, dim) -> (B, n_t, width), (B, n_s, width); graphs: the
        images' spectra, which 's' layers need (None for a stack of 'x' layers only);
        shapes: the two token grids (h, w)."""
        f_t, f_s = self.embed(f_t), self.embed(f_s)
        c_t, c_s = (pooled(f, shape, self.stride) for f, shape in zip((f_t, f_s), shapes))
        graphs = None if graphs is None else graphs.pooled(self.stride)
        for layer in self.layers:
            c_t, c_s = layer(c_t, c_s, graphs)
        if self.stride == 1:
            return self.norm(c_t), self.norm(c_s)
        fine = []
        for f, c, shape in zip((f_t, f_s), (c_t, c_s), shapes):  # each token gets its cell's change
            change = c - pooled(f, shape, self.stride)  # (B, n', width)
            fine.append(self.norm(f + upsampled(change, coarse_shape(shape, self.stride), shape)))
        return fine[0], fine[1]
