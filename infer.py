"""Run the spectral shader on an image pair (not wired up yet)."""

import sys

if __name__ == "__main__":
    sys.exit("infer.py: the shader model is not built yet (issue: the model); nothing was written")
