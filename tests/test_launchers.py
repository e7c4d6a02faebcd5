"""Hydra's submitit launcher and Optuna sweeper (the `cluster` and `sweep` extras): the
configs compose, and small sweeps run here for real (slow tests)."""

import json
import os
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir
from test_infer import small_png
from test_train import CONFIGS, ROOT, run_train


def compose_train(*overrides):
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=True)


def test_slurm_launcher_config_composes_with_its_documented_options():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    cfg = compose_train("hydra/launcher=slurm", "hydra.launcher.partition=gpu", "trainer=gpu")
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert launcher.partition == "gpu" and launcher.gpus_per_node == launcher.tasks_per_node == 1
    assert launcher.timeout_min == 240 and cfg.trainer.devices == 1


def test_optuna_search_config_composes_and_maximises_the_metric():
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    cfg = compose_train("hparams_search=pck_optuna", "output_dir=x")
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.direction == "maximize"
    assert cfg.optimized_metric == "val/pck@0.05"
    assert set(sweeper.params) == {
        "optim.optimizer.lr",
        "model.attention.softmax_scale",
        "model.attention.features",
    }


@pytest.mark.slow
def test_submitit_local_runs_a_two_job_sweep(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    sweep = tmp_path / "sweep"
    proc = run_train(
        tmp_path,
        "-m",
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=10",
        "experiment=fmap,learned",
        "trainer.max_epochs=1",
        f"hydra.sweep.dir={sweep}",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(list(sweep.glob("*/metrics.json"))) == 2
    assert list(sweep.glob(".submitit/*/*_result.pkl"))  # the jobs went through submitit
    assert "experiment=fmap" in (sweep / "summary.md").read_text()


@pytest.mark.slow
def test_optuna_sweep_runs_four_trials_and_names_the_best(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    sweep = tmp_path / "sweep"
    proc = run_train(
        tmp_path,
        "-m",
        "hparams_search=pck_optuna",
        "hydra.sweeper.n_trials=4",
        "hydra.sweeper.sampler.n_startup_trials=2",
        "trainer.max_epochs=1",
        "test=false",
        f"hydra.sweep.dir={sweep}",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    trials = [json.loads(p.read_text()) for p in sweep.glob("*/metrics.json")]
    assert len(trials) == 4 and all("val/pck@0.05" in t["metrics"] for t in trials)
    summary = (sweep / "summary.md").read_text()
    assert summary.count("**best**") == 1 and "optim.optimizer.lr=" in summary
    assert (sweep / "optimization_results.yaml").exists()


@pytest.mark.slow
def test_inference_shards_over_submitit_and_exits_0_once_both_are_done(tmp_path):
    """`infer.py -m hydra/launcher=submitit_local pairs=a.csv,b.csv`: a shard's task function
    returns its status, so submitit gets a result; a shard that fails fails the multirun."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    for name in "abcd":
        small_png(tmp_path / f"{name}.png")
    (tmp_path / "a.csv").write_text("a.png,b.png\n")
    (tmp_path / "b.csv").write_text("c.png,d.png\n")
    (tmp_path / "bad.csv").write_text("missing.png,d.png\n")

    def shard(pairs: str, sweep: str):
        return subprocess.run(
            [sys.executable, str(ROOT / "infer.py"), "-m", "hydra/launcher=submitit_local"]
            + ["hydra.launcher.timeout_min=10", f"pairs={pairs}", f"hydra.sweep.dir={sweep}"]
            + ["progress=false", "direction=forward"],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=dict(os.environ, SPECTRAL_RESNET_CACHE=str(tmp_path / "cache")),
            timeout=600,
        )

    proc = shard("a.csv,b.csv", "sweep")
    assert proc.returncode == 0, proc.stderr[-2000:]
    summaries = [
        json.loads((tmp_path / "sweep" / job / "summary.json").read_text()) for job in "01"
    ]
    assert [[d["name"] for d in s["done"]] for s in summaries] == [["a_b"], ["c_d"]]
    assert list((tmp_path / "sweep").glob(".submitit/*/*_result.pkl"))
    failed = shard("a.csv,bad.csv", "failed")
    assert failed.returncode != 0
    assert "JobFailed: job 1 (pairs=bad.csv" in failed.stderr
    assert json.loads((tmp_path / "failed" / "1" / "summary.json").read_text())["failed"]


def test_a_plain_run_composes_its_config_once_and_runs_its_job_as_hydra_does(tmp_path, monkeypatch):
    """launch(): one compose (Hydra's own command line makes three), the job in Hydra's run
    dir with HydraConfig set; a bad option is one line and exit code 2 before any job."""
    from hydra._internal.hydra import Hydra
    from hydra.core.hydra_config import HydraConfig

    from spectral_resnet.cli import launch

    composes, seen = [], {}
    compose_config = Hydra.compose_config

    def counted(self, *args, **kwargs):
        composes.append(args)
        return compose_config(self, *args, **kwargs)

    def task(cfg):
        seen.update(cfg=cfg, dir=HydraConfig.get().runtime.output_dir, cwd=os.getcwd())
        return 0

    def main():
        raise AssertionError("a plain run does not go through Hydra's command line")

    main.__wrapped__ = task
    monkeypatch.setattr(Hydra, "compose_config", counted)
    monkeypatch.setattr(sys, "argv", ["infer.py", f"output_dir={tmp_path / 'out'}", "threads=1"])
    launch("infer", main, "infer.py")
    assert len(composes) == 1 and "hydra" not in seen["cfg"] and seen["cfg"].threads == 1
    assert seen["dir"] == str(tmp_path / "out") and seen["cwd"] == os.getcwd()
    monkeypatch.setattr(sys, "argv", ["infer.py", "threads=0"])
    with pytest.raises(SystemExit) as stop:
        launch("infer", main, "infer.py")
    assert stop.value.code == 2 and len(composes) == 2


FAULTS = """
import resource, sys, torch
from spectral_resnet.cli import hold_freed_memory
held = hold_freed_memory() if sys.argv[1] == "hold" else None
faults = []
for _ in range(12):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.empty(2**24).fill_(1)  # 64 MB taken, touched and freed
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(held, sum(faults[-4:]))
"""


BLAS_THREADS = """
import json, torch
from threadpoolctl import threadpool_info
from spectral_resnet.cli import tune_process
torch.set_num_threads(2)
tune_process()
import scipy.linalg  # noqa: E402  a pool the process already holds: loaded before the limit
blas = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
print(json.dumps([blas, torch.get_num_threads()]))
"""


def test_tune_process_leaves_the_cores_to_torch():
    """numpy's and scipy's BLAS pools run one thread each; torch keeps the threads it has."""
    out = subprocess.run(
        [sys.executable, "-c", BLAS_THREADS], capture_output=True, text=True, check=True
    )
    blas, torch_threads = json.loads(out.stdout)
    if not blas:
        pytest.skip("no BLAS pool that threadpoolctl can see (e.g. Accelerate)")
    assert set(blas) == {1}, blas  # here two: scipy's and numpy's OpenBLAS
    assert torch_threads == 2


EXIT_FREEZE = """
import atexit, gc, sys
atexit.register(lambda: print(gc.get_freeze_count(), flush=True))  # runs after later ones
from spectral_resnet.cli import quick_exit, tune_process
tune_process()
if sys.argv[1] == "quick":
    quick_exit()
print("ran", flush=True)
"""


def test_the_clis_exit_without_collecting_what_is_left():
    """After the CLIs' last line, the objects still alive are frozen out of the collector's
    final passes (quick_exit); a process that only tuned itself, as a user's script may,
    exits as Python always does."""
    counts = {}
    for mode in ("quick", "tuned"):
        out = subprocess.run(
            [sys.executable, "-c", EXIT_FREEZE, mode], capture_output=True, text=True, check=True
        )
        ran, frozen = out.stdout.split()
        assert ran == "ran"
        counts[mode] = int(frozen)
    assert counts["tuned"] == 0 and counts["quick"] > 10_000, counts


LEAVE = """
import atexit, sys
from spectral_resnet.cli import leave

class Kept:
    def __del__(self):
        print("torn down", flush=True)

kept = Kept()  # alive at exit: the interpreter's teardown would finalize it
atexit.register(lambda: print("atexit ran"))
sys.stdout.write("a line not ended, still in the buffer; ")
sys.stderr.write("on stderr")
if sys.argv[1] == "busy":  # a thread still at work: Python's own exit, which waits for it
    import threading, time
    threading.Thread(target=lambda: (time.sleep(0.3), print("thread done", flush=True))).start()
if sys.argv[1] in ("leave", "busy"):
    leave(3)
sys.exit(3)
"""


def test_infer_leaves_with_its_code_after_the_atexit_handlers_and_no_teardown():
    """cli.leave: the exit code, the atexit handlers' output and whatever the streams still
    buffered all come out; only the interpreter's teardown (here a live object's __del__)
    is skipped, as a plain exit does not. With a thread still at work, the process exits as
    Python does, after the thread."""
    runs = {}
    for mode in ("leave", "exit", "busy"):
        out = subprocess.run([sys.executable, "-c", LEAVE, mode], capture_output=True, text=True)
        assert out.returncode == 3 and out.stderr == "on stderr", out
        runs[mode] = out.stdout
    assert runs["leave"] == "a line not ended, still in the buffer; atexit ran\n"
    assert runs["exit"] == runs["leave"] + "torn down\n"
    assert runs["busy"].startswith("a line not ended, still in the buffer; thread done\n")
    assert "atexit ran" in runs["busy"] and "torn down" in runs["busy"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc setting")
def test_the_clis_reuse_freed_memory_without_page_faults():
    """Once the heap has grown to hold it, a 64 MB map freed and taken again comes back
    without faulting its pages in anew, as it does without the setting."""
    runs = {}
    for mode in ("hold", "release"):
        out = subprocess.run(
            [sys.executable, "-c", FAULTS, mode], capture_output=True, text=True, check=True
        )
        held, faults = out.stdout.split()
        runs[mode] = (held, int(faults))
    assert runs["hold"][0] == "True", "mallopt refused the thresholds"
    assert runs["release"][1] > 0, "no page faults even without the setting: nothing to test"
    assert runs["hold"][1] * 4 < runs["release"][1], runs


@pytest.mark.parametrize("cli", [["infer.py"], ["train.py"], ["-m", "spectral_resnet.eval"]])
def test_each_cli_prints_its_help(cli):
    """`--help` fills Hydra's help template: a literal `$` in the header must be `$$`."""
    script = [str(ROOT / cli[0])] if cli[0].endswith(".py") else cli
    out = subprocess.run(
        [sys.executable, *script, "--help"], capture_output=True, text=True, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "== Configuration groups ==" in out.stdout and "Traceback" not in out.stderr
