"""Train the Q/K projections (not wired up yet)."""

import sys

if __name__ == "__main__":
    sys.exit("train.py: training is not built yet (issue: train.py); nothing was written")
