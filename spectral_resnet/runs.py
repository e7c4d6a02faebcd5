"""One direction of one pair, as every front end runs it (infer.py, batch mode, the app,
the gallery): shade (the caller's progress bar ticked after each block), render every
picture in memory, and the run's run.json entry."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path

import torch
from tqdm import tqdm

from spectral_resnet import viz
from spectral_resnet.context import Outcome
from spectral_resnet.io import encode_image, image_mask, to_uint8


def render(name: str, target, sample, out, pattern: str) -> dict[str, torch.Tensor]:
    """Every picture of one direction, in memory: file name -> (3, H, W) image, float in
    [0, 1] or (the seeds overlay) uint8."""
    prefix = f"{name}_{pattern}"
    pictures = {f"{prefix}.png": out.image[0]}
    drawn: dict[int, torch.Tensor] = {}  # the paste blocks of a pass share one activation
    for act in out.activations:
        if id(act) not in drawn:
            drawn[id(act)] = viz.heatmap(act[0, 0])
    heatmaps = [drawn[id(act)] for act in out.activations]
    for i, heat in enumerate(heatmaps):
        pictures[f"{prefix}_act{i}_{pattern[i]}.png"] = heat
    masks = [m for block in out.pastes for m in block.masks[0]]  # (H, W) each, seed order
    seeds = out.seeds[0] if out.seeds is not None else None
    pictures[f"{prefix}_seeds.png"] = viz.overlay(out.image[0], masks, seeds)
    pictures[f"{prefix}_sheet.png"] = viz.contact_sheet(
        [
            ("target", target[0]),
            ("sample", sample[0]),
            ("activation", heatmaps[0]),  # drawn once, for its file and the sheet
            ("seeds + masks", pictures[f"{prefix}_seeds.png"]),
            (f"output ({pattern})", out.image[0]),
        ]
    )
    return pictures


def encode_all(
    pictures: dict[str, torch.Tensor], submit: Callable[..., Future] | None = None
) -> dict[str, bytes | Future]:
    """Each picture's file bytes, a picture that several files show (the activation maps of
    a pass's paste blocks) encoded once. submit: an executor's, to encode in its threads
    (then the values are futures)."""
    done: dict[tuple[int, str], bytes | Future] = {}
    files = {}
    for file, image in pictures.items():
        key = (id(image), Path(file).suffix)
        if key not in done:
            job = (encode_image, to_uint8(image), key[1])
            done[key] = submit(*job) if submit is not None else job[0](*job[1:])
        files[file] = done[key]
    return files


def shade(
    shader,
    target,
    sample,
    name: str,
    t_path: Path,
    s_path: Path,
    device,
    masks: dict[Path, torch.Tensor | None] | None = None,
    tick: Callable[[], None] = lambda: None,
):
    """One direction, named `name`: shade `target` (1, 3, H, W) with `sample`, render every
    picture in memory; returns (file name -> image, the run's run.json entry). masks: each
    image's mask (H, W) bool by its path, if it has one. tick: called after each block (a
    progress bar's update, owned by the caller)."""
    masks = masks or {}
    t_mask, s_mask = (masks.get(p) for p in (t_path, s_path))
    with torch.no_grad():
        out = shader(
            target.to(device),
            sample.to(device),
            progress=lambda _: tick(),
            target_mask=None if t_mask is None else t_mask.to(device),
            sample_mask=None if s_mask is None else s_mask.to(device),
        )
    pictures = render(name, target.cpu(), sample.cpu(), out, shader.pattern)
    entry = {
        "target": str(t_path),
        "sample": str(s_path),
        "output": f"{name}_{shader.pattern}.png",
        "masks": {"target": t_mask is not None, "sample": s_mask is not None},
        "timings_s": {k: round(v, 4) for k, v in out.timings.items()},
        "eigensolver_residuals": out.residuals,
        "sample_view": None if out.views is None else dict(zip(("angle", "scale"), out.views[0])),
        "seeds": [b.seeds[0].tolist() for b in out.pastes],
        "pastes": [int((b.components[0] > 0).sum()) for b in out.pastes],
        # per paste block and seed: how many cuts made the pasted part of its shape (0: whole)
        "splits": [b.splits[0].tolist() for b in out.pastes if b.splits is not None],
        "skipped": [
            {"seed": seed, "reason": Outcome(code).reason(shader.config.paste)}
            for b in out.pastes
            for seed, code in zip(b.seeds[0].tolist(), b.outcomes[0].tolist())
            if Outcome(code).reason(shader.config.paste)
        ],
    }
    return pictures, entry


@contextmanager
def ctrl_c_after() -> Iterator[None]:
    """Hold a Ctrl-C (SIGINT) that comes in the block until the block is done, then deliver
    it as it would have been. Python raises KeyboardInterrupt only in the main thread, so
    elsewhere there is nothing to hold; nor is there where Python cannot put the handler
    back (one set outside Python, or the interpreter's exit: getsignal gives None)."""
    previous = signal.getsignal(signal.SIGINT)
    if previous is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    signal.signal(signal.SIGINT, lambda number, _: held.append(number))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if held:
        signal.raise_signal(signal.SIGINT)


class BlocksBar(tqdm):
    """A progress bar that a Ctrl-C never stops halfway through a draw. tqdm holds its write
    lock while it draws, without a try/finally: a KeyboardInterrupt raised in the middle
    leaves the lock held, and a thread that draws the other direction's bar
    (`directions.Listener`) then waits for it for ever, while the main thread waits for
    that thread."""

    def update(self, n: float | None = 1) -> bool | None:
        with ctrl_c_after():
            return super().update(n)

    def close(self) -> None:
        with ctrl_c_after():
            super().close()


def blocks_bar(name: str, blocks: int, enabled: bool, line: int = 0) -> BlocksBar:
    """A direction's progress bar over its blocks; line 1: below another direction's, both
    drawn by this process. Close it (a `with`) on Ctrl-C too, so what is printed next
    starts a line of its own."""
    return BlocksBar(total=blocks, desc=name, unit="block", disable=not enabled, position=line)


def notice(entry: dict) -> str | None:
    """One line for a run that pasted nothing although seeds asked: how many seeds were
    skipped, the main reason, and what to try (an unchanged output is never silent)."""
    if sum(entry["pastes"]) or not entry["skipped"]:
        return None
    reasons = [s["reason"] for s in entry["skipped"]]
    main = max(set(reasons), key=reasons.count)
    hint = ""
    if "no room" in main:
        hint = "; try a smaller model.paste.min_scale or a larger model.paste.reach"
    return f"{entry['output']}: nothing pasted, {len(reasons)} seeds skipped, mostly: {main}{hint}"


def pair_masks(
    paths: dict[str, Path], images: dict[str, torch.Tensor], options: dict[str, str | None]
) -> dict[Path, torch.Tensor | None]:
    """Each image's mask (H, W) bool by its path, from the `target_mask` / `sample_mask`
    options (role -> file or folder): a mask follows its image, so in the reverse run the
    target's acts as the sample's. When both roles are one file, the target's mask wins."""
    return {
        paths[role]: image_mask(options[role], paths[role], images[role].shape[-2:], f"{role}_mask")
        for role in ("sample", "target")
    }
