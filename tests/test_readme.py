"""The README is for users: short, and every infer.py / train.py command in it composes and
names files that exist."""

import importlib.util
import re
import shlex
from pathlib import Path

import pytest

from spectral_resnet.cli import check_overrides

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
# options whose configs come from an optional extra: composed only where it is installed
EXTRAS = {"hparams_search=": "hydra_plugins.hydra_optuna_sweeper"}  # .[sweep]


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # its parent package is missing too
        return False


def commands(program: str) -> list[list[str]]:
    """The README's `python <program> ...` lines inside bash blocks, as argument lists."""
    blocks = re.findall(r"```bash\n(.*?)```", README, flags=re.S)
    lines = [line.split("  #")[0].strip() for block in blocks for line in block.splitlines()]
    return [shlex.split(line)[2:] for line in lines if line.startswith(f"python {program} ")]


def test_the_readme_is_at_most_250_lines_and_tells_no_history():
    assert len(README.splitlines()) <= 250
    for word in ("issue", "session", "previous", "used to", "no longer", "stop"):
        assert word not in README.lower(), word


@pytest.mark.parametrize("program, config", [("infer.py", "infer"), ("train.py", "train")])
def test_every_readme_command_composes_and_its_files_exist(program, config, monkeypatch, tmp_path):
    monkeypatch.chdir(ROOT)
    found = commands(program)
    assert found
    for argv in found:
        if "--help" in argv or any("<" in a or "~" in a for a in argv):
            continue  # placeholders a user fills in
        extras = [m for o, m in EXTRAS.items() if any(a.startswith(o) for a in argv)]
        if not all(installed(m) for m in extras):
            continue  # the README names the extra it needs
        checked = check_overrides(config, argv, program)  # exits 2 on a bad option
        for arg in checked:
            key, _, value = arg.partition("=")
            if key in ("target", "sample", "target_mask", "sample_mask", "pairs") and value:
                if "," not in value:  # a sweep's CSVs are the user's
                    assert (ROOT / value.strip("'")).exists(), arg
