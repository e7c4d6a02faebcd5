"""Hydra callback: after a multirun, one table of every job's overrides and metrics."""

from __future__ import annotations

import json
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


def summarise(sweep_dir: Path, metric: str) -> str:
    """Markdown table of each job's overrides and metrics (from its metrics.json)."""
    rows = []
    for file in sorted(sweep_dir.glob("*/metrics.json"), key=lambda p: p.parent.name):
        data = json.loads(file.read_text())
        rows.append((file.parent.name, data.get("overrides", []), data.get("metrics", {})))
    if not rows:
        return f"no finished jobs under {sweep_dir}\n"
    names = sorted({k for _, _, m in rows for k in m if k.startswith(("val/", "test/"))})
    head = ["job", "overrides", *names]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    best = max(rows, key=lambda r: r[2].get(metric, float("-inf")))
    for job, overrides, metrics in rows:
        mark = " **best**" if job == best[0] else ""
        cells = [
            job + mark,
            " ".join(overrides),
            *(f"{metrics[n]:.4f}" if n in metrics else "" for n in names),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


class SweepSummary(Callback):
    """Writes `summary.md` into the sweep dir and prints it."""

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        table = summarise(sweep_dir, config.get("optimized_metric", "val/pck@0.05"))
        (sweep_dir / "summary.md").write_text(table)
        print(f"sweep summary ({sweep_dir / 'summary.md'}):\n{table}")
