"""The web app: `pip install -e ".[app]" && python -m spectral_resnet.app [--port 7860]`.

Upload a target and a sample (or pick a bundled pair), optionally a mask for each, choose
the weights, pattern, direction and the main paste options, and shade: the page shows the
output and its contact sheet, with run.json to download. It listens on 127.0.0.1 unless
GRADIO_SERVER_NAME says otherwise (GRADIO_SERVER_PORT or --port for the port). The main call
is the API endpoint "/shade", so `gradio_client` can script it:

    from gradio_client import Client, handle_file
    output, sheet, report = Client("http://127.0.0.1:7860/").predict(
        handle_file("target.png"), handle_file("sample.png"), api_name="/shade")
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import tempfile
from dataclasses import replace
from pathlib import Path

import torch

from spectral_resnet.cli import quick_exit, tune_process, write_json
from spectral_resnet.config import INKS, ShaderConfig
from spectral_resnet.io import ImageError, load_image, save_image
from spectral_resnet.model import CheckpointError, SpectralShader
from spectral_resnet.runs import blocks_bar, notice, pair_masks, shade
from spectral_resnet.weights import WEIGHTS, WeightsError

ASSETS = Path(__file__).resolve().parent.parent / "assets"
MAX_UPLOAD = "20mb"  # per file: a phone photo fits, a mistaken video does not
MAX_PIXELS = 4096 * 4096
ROTATIONS = ["90", "0", "45", "180", "align"]


@functools.lru_cache(maxsize=8)
def load_shader(weights: str, options: str) -> SpectralShader:
    """The shader for these weights and runtime options (ShaderConfig as JSON), built once
    per process: a page's repeated tries reuse it (the spectrum cache is process-wide)."""
    config = ShaderConfig.from_dict(json.loads(options))
    return SpectralShader.from_pretrained(weights, config).eval()


def run_shader(
    target: str | None,
    sample: str | None,
    target_mask: str | None = None,
    sample_mask: str | None = None,
    weights: str = "default",
    pattern: str = "cccc",
    direction: str = "forward",
    max_pastes: float = 6,
    rotation: str = "90",
    min_scale: float = 0.5,
    ink: str = "auto",
    progress=None,
) -> tuple[str, str, str, dict]:
    """Shade one pair: file paths in; (output PNG, contact sheet PNG, run.json) paths and the
    run's run.json entry out. Bad input is a ValueError whose message names the problem and the fix."""
    if not target or not sample:
        raise ValueError("give a target and a sample image (upload both, or pick an example)")
    if direction not in ("forward", "reverse"):
        raise ValueError(f"direction must be forward or reverse, got {direction!r}")
    paths = {"target": Path(target), "sample": Path(sample)}
    images = {role: load_image(path, max_pixels=MAX_PIXELS) for role, path in paths.items()}
    masks = pair_masks(paths, images, {"target": target_mask, "sample": sample_mask})
    base = ShaderConfig()
    paste = replace(
        base.paste,
        max_pastes=int(max_pastes),
        rotation=rotation if rotation == "align" else float(rotation),
        min_scale=float(min_scale),
        ink=ink,
    )
    config = replace(base, pattern=pattern, paste=paste)  # every range checked here
    shader = load_shader(weights, json.dumps(config.to_dict()))
    t, s = ("target", "sample") if direction == "forward" else ("sample", "target")
    if progress is not None:
        progress(0.0, desc="spectra and attention")
    # a tqdm bar over the blocks, which the page tracks
    with blocks_bar("app", len(shader.blocks), progress is not None) as bar:
        pictures, entry = shade(
            shader,
            images[t][None],
            images[s][None],
            "app",
            paths[t],
            paths[s],
            torch.device("cpu"),
            masks=masks,
            tick=bar.update,
        )
    out = Path(tempfile.mkdtemp(prefix="spectral_resnet_app_"))
    output = save_image(pictures[entry["output"]], out / "output.png")
    sheet = save_image(pictures[f"app_{shader.pattern}_sheet.png"], out / "sheet.png")
    report = {"model": shader.config.to_dict(), "weights": weights, "runs": [entry]}
    return str(output), str(sheet), str(write_json(report, out / "run.json")), entry


def examples() -> list[list[str]]:
    """The bundled pairs as (target, sample) files: the demo pair and the gallery's pairs."""
    pairs = [[ASSETS / "toof.png", ASSETS / "tone.png"]]
    gallery = ASSETS / "gallery"
    if (gallery / "gallery.json").is_file():  # its runs are named <target>_<sample>
        for name in json.loads((gallery / "gallery.json").read_text()):
            pairs.append([gallery / "inputs" / f"{part}.png" for part in name.split("_", 1)])
    return [[str(f) for f in pair] for pair in pairs if all(f.is_file() for f in pair)]


def build_app():
    """The page: inputs on the left, results on the right, one button, endpoint /shade."""
    import gradio as gr

    def on_shade(
        target,
        sample,
        target_mask=None,
        sample_mask=None,
        weights="default",
        pattern="cccc",
        direction="forward",
        max_pastes=6,
        rotation="90",
        min_scale=0.5,
        ink="auto",
        progress=gr.Progress(track_tqdm=True),  # noqa: B008 (Gradio finds its tracker by this default)
    ):
        """run_shader's arguments, defaulted as in the API: two images are enough."""
        options = dict(weights=weights, pattern=pattern, direction=direction, ink=ink)
        options.update(max_pastes=max_pastes, rotation=rotation, min_scale=min_scale)
        try:
            *files, entry = run_shader(
                target, sample, target_mask, sample_mask, **options, progress=progress
            )
        except (ImageError, WeightsError, CheckpointError, ValueError) as err:
            raise gr.Error(str(err), print_exception=False) from None
        if line := notice(entry):
            gr.Warning(line)  # an unchanged output says why, on the page
        return tuple(files)

    with gr.Blocks(title="spectral_resnet") as app:
        gr.Markdown(
            "## spectral_resnet\nCopies shapes from a **sample** onto a **target**: each paste "
            "is a whole sample shape, placed where the target has room. Masks: white (or "
            "opaque) is allowed; on the target, where pastes may land; on the sample, which "
            "shapes may be taken."
        )
        with gr.Row():
            with gr.Column():
                with gr.Row():
                    target = gr.Image(type="filepath", label="target", sources=["upload"])
                    sample = gr.Image(type="filepath", label="sample", sources=["upload"])
                with gr.Accordion("masks (optional)", open=False), gr.Row():
                    target_mask = gr.Image(
                        type="filepath", label="target mask", image_mode="RGBA", sources=["upload"]
                    )
                    sample_mask = gr.Image(
                        type="filepath", label="sample mask", image_mode="RGBA", sources=["upload"]
                    )
                weights = gr.Dropdown(["default", *WEIGHTS], value="default", label="weights")
                pattern = gr.Textbox("cccc", label="pattern (c paste, t thicken, h shadow, f fuzz)")
                direction = gr.Radio(["forward", "reverse"], value="forward", label="direction")
                max_pastes = gr.Slider(1, 32, value=6, step=1, label="max pastes")
                rotation = gr.Dropdown(ROTATIONS, value="90", label="rotation (degrees, or align)")
                min_scale = gr.Slider(0.1, 1.0, value=0.5, step=0.05, label="min scale")
                ink = gr.Dropdown(list(INKS), value="auto", label="ink")
                button = gr.Button("Shade", variant="primary", elem_id="shade")
                gr.Examples(examples(), inputs=[target, sample], label="bundled pairs")
            with gr.Column():
                output = gr.Image(type="filepath", label="output", elem_id="output")
                sheet = gr.Image(type="filepath", label="contact sheet")
                report = gr.File(label="run.json")
        inputs = [target, sample, target_mask, sample_mask, weights, pattern, direction]
        inputs += [max_pastes, rotation, min_scale, ink]
        button.click(on_shade, inputs, [output, sheet, report], api_name="shade")
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m spectral_resnet.app", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--port", type=int, default=None, help="default: GRADIO_SERVER_PORT or 7860"
    )
    args = parser.parse_args(argv)
    tune_process()  # as the other CLIs
    quick_exit()
    host = os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1")
    port = args.port or int(os.environ.get("GRADIO_SERVER_PORT", 7860))
    app = build_app().queue()
    app.launch(server_name=host, server_port=port, max_file_size=MAX_UPLOAD, show_error=True)


if __name__ == "__main__":
    main()
