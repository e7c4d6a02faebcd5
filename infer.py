"""Shade image pairs: `python infer.py TARGET SAMPLE model.pattern=cccc direction=both`.

With no arguments it runs the bundled demo pair (assets/toof.png, assets/tone.png) in both
directions and writes the output images, activation heatmaps, seed overlays, contact
sheets and a run.json into Hydra's run dir. The first two arguments without `=` are the
target and the sample, any file name as it is. Every option: spectral_resnet.config.InferConfig.
Shards over Hydra's launchers: `python infer.py -m hydra/launcher=slurm pairs=a.csv,b.csv`.
"""

import hydra
from omegaconf import DictConfig

from spectral_resnet.cli import exit_status, job_status, launch, leave
from spectral_resnet.inference import cli_main


@hydra.main(version_base="1.3", config_path="configs", config_name="infer")
def main(cfg: DictConfig) -> int:
    return job_status(cli_main(cfg))


if __name__ == "__main__":
    launch("infer", main, "infer.py")
    leave(exit_status())
