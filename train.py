"""Train the Q/K projections (and FFN) with Lightning: `python train.py [experiment=learned]`.

Sweeps: `python train.py -m experiment=identity,fmap,learned data.size=64,96` writes each
job's metrics.json and a summary.md table into the sweep dir. See configs/train.yaml.
"""

import hydra
from omegaconf import DictConfig

from spectral_resnet.cli import launch
from spectral_resnet.training import cli_main


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> float:
    return cli_main(cfg)


if __name__ == "__main__":
    launch("train", main, "train.py")
