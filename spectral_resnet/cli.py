"""What the three command-line programs (infer.py, train.py, eval) share: reading the command
line before Hydra does, checking output paths before any work, and the one error type whose
message is printed as one line with exit code 2.

A run either fails before it starts (a bad option, an output path it could never write) or
keeps what it made: every check here runs before the expensive part.
"""

from __future__ import annotations

import atexit
import gc
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import unicodedata
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import hydra
import torch
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf

from spectral_resnet.config import ShaderConfig, check_lr_interval
from spectral_resnet.io import write_atomic
from spectral_resnet.weights import WeightsError, checkpoint_path, names

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
STARTED = time.time()
# options whose values are paths: a file name Hydra's grammar cannot read is quoted for it
PATH_OPTIONS = (
    "target",
    "sample",
    "target_mask",
    "sample_mask",
    "pairs",
    "output_dir",
    "ckpt",
    "ckpt_path",
    "init_from",
    "export",
    "json",
    "pairs_dir",
    "data.folder",
    "data.real_pairs",
    "hydra.run.dir",
    "hydra.sweep.dir",
)
MULTIRUN = ("-m", "--multirun")
POSITIONAL = {"infer": ("target", "sample")}  # a program's arguments that may come without `=`
MAX_SWEEP_CHECKS = 64  # composes a multirun's check tries (each value of each swept option)

# `${first:a,b}`: a unless it is null (configs use it for "output_dir, else Hydra's run dir")
if not OmegaConf.has_resolver("first"):
    OmegaConf.register_new_resolver("first", lambda a, b: b if a is None else a)


class UsageError(ValueError):
    """A bad command-line value; the message says which and what to use instead."""


class JobFailed(RuntimeError):
    """A multirun job that ended with a non-zero status, raised so that its launcher (basic,
    submitit, SLURM) records the job as failed; its own error line is already printed."""


STATUSES: list[int] = []  # the exit status of every job this process ran


def job_status(status: int) -> int:
    """A Hydra task function's result: its exit status, kept for `exit_status()`. The task
    returns instead of exiting, so a launcher running it in another process (submitit)
    receives a result; a failed job of a multirun raises JobFailed."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    STATUSES.append(status)
    if status and HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        hydra = HydraConfig.get()
        raise JobFailed(
            f"job {hydra.job.num} ({' '.join(hydra.overrides.task)}) ended with exit status "
            f"{status}; its outputs and summary are in {hydra.runtime.output_dir}"
        )
    return status


def exit_status() -> int:
    """The process's exit code: the worst status of the jobs it ran here (0 when a launcher
    ran them elsewhere and they all returned)."""
    return max(STATUSES, default=0)


# --------------------------------------------------------------------------- the command line


def hydra_quote(value: str) -> str:
    """`value` as a quoted string of Hydra's override grammar: any file name survives it."""
    escaped = re.sub(r"(\\+)(?='|$)", lambda m: m.group(1) * 2, value)  # backslashes before '
    return "'" + escaped.replace("'", "\\'") + "'"


def quote_paths(argv: list[str], positional: tuple[str, ...] = ()) -> list[str]:
    """The command line with every path option readable by Hydra.

    Leading arguments without `=` are the `positional` options in order (`infer.py a.png
    b.png ...` = `target=a.png sample=b.png`), and a path option whose value Hydra's grammar
    cannot read (`photo (1).png`, `Café.png`, `img[1].png`, `it's.png`) or would read as a
    sweep (`a,b.png`) is quoted, so people's real file names work as they are typed.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser, multirun = OverridesParser.create(), any(a in MULTIRUN for a in argv)
    out, names = [], list(positional)
    for arg in argv:
        if names and "=" not in arg and not arg.startswith(("-", "+", "~")):
            out.append(f"{names.pop(0)}={hydra_quote(arg)}")
            continue
        names = []  # positional values come first, before any override
        key, eq, value = arg.partition("=")
        if eq and key.lstrip("+") in PATH_OPTIONS and value and value[0] not in "'\"":
            try:
                sweep = parser.parse_overrides([arg])[0].is_sweep_override()
                quote = sweep and not multirun  # `-m target=a.png,b.png` is a sweep
            except OverrideParseException:
                quote = True
            if quote:
                arg = f"{key}={hydra_quote(value)}"
        out.append(arg)
    return out


def sweep_variants(overrides: list[str]) -> list[list[str]]:
    """Single-run override lists that together try every value of every swept option once
    (the others at their first value); interval sweeps are the sweeper's to sample."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()

    def single(key: str, value: str) -> str:
        try:
            parser.parse_overrides([f"{key}={value}"])
            return f"{key}={value}"
        except OverrideParseException:
            return f"{key}={hydra_quote(value)}"

    choices: list[list[str]] = []
    for override in parser.parse_overrides(overrides):
        if not override.is_sweep_override():
            choices.append([override.input_line])
        elif not override.is_interval_sweep():  # interval(...): the sweeper samples it
            key = override.get_key_element()
            choices.append([single(key, v) for v in override.sweep_string_iterator()])
    base = [c[0] for c in choices]
    variants = [base]
    for i, values in enumerate(choices):
        for value in values[1:]:
            variants.append(base[:i] + [value] + base[i + 1 :])
    return variants[:MAX_SWEEP_CHECKS]


def check_overrides(config_name: str, argv: list[str], prog: str) -> list[str]:
    """Compose the config from the command line before Hydra runs the app, so a bad override
    (unknown key, wrong type, out of range) is one line and exit code 2, not Hydra's report
    and exit 1; a multirun is checked for every swept value. Returns the command line for
    Hydra, path options quoted (`quote_paths`). Hydra's other flags (--help, --cfg ...) are
    left to Hydra."""
    argv = quote_paths(argv, POSITIONAL.get(config_name, ()))
    flags = [a for a in argv if a.startswith("-")]
    if any(flag not in MULTIRUN for flag in flags):
        return argv
    overrides = [
        a for a in argv if not a.startswith("-") and not a.lstrip("+~").startswith("hydra")
    ]
    with reported(prog), configs(config_name):
        for variant in sweep_variants(overrides) if flags else [overrides]:
            composed(config_name, variant)
        check_hydra_dirs(argv)
    return argv


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters


def hold_freed_memory() -> bool:
    """Let glibc's malloc keep freed memory for reuse instead of handing it back at once: a
    run frees and allocates the same large maps again and again, and memory taken back from
    the system costs a page fault every 4 KiB (`tune_process` sets it for the CLIs and the
    app; the library alone leaves malloc as it is). Paired warm 512² `infer.py` runs took 0.94x
    the wall time and half the system time (docs/benchmarks.md). The trim threshold is set
    only where the mmap threshold was (older glibc caps it at 32 MiB): either alone switches
    off glibc's adaptive threshold and is slower. Returns whether both are set; False where
    the C library has no mallopt."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name and sys.platform.startswith("linux") else None
    except OSError:
        libc = None
    if libc is None or not hasattr(libc, "mallopt"):
        return False
    if not (libc.mallopt(M_MMAP_THRESHOLD, 1 << 30) or libc.mallopt(M_MMAP_THRESHOLD, 32 << 20)):
        return False
    return bool(libc.mallopt(M_TRIM_THRESHOLD, 1 << 30))


def one_blas_thread() -> None:
    """numpy's and scipy's BLAS (OpenBLAS) on one thread, torch keeping its own: the
    scipy steps (the eigensolver, cutting a shape) make small BLAS calls, after which
    OpenBLAS's idle threads spin on the cores torch's next ops need. The pastes of a 512²
    photo pair took twice as long beside them; the eigensolve is no slower on one thread
    (docs/benchmarks.md)."""
    # scipy's BLAS loaded first: a pool loaded after the limit would keep its threads
    import scipy.sparse.linalg  # noqa: F401
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()  # an OpenMP-built OpenBLAS would set OpenMP's too
    threadpool_limits(limits=1, user_api="blas")
    torch.set_num_threads(threads)


def quick_exit() -> None:
    """At exit, freeze the objects still alive out of Python's last collections: those
    passes over torch's and numpy's hundreds of thousands of objects cost a run 0.4-0.6 s
    after its last file was written (docs/benchmarks.md). The atexit handlers still run
    (logging's flush and close among them) and the standard streams are flushed; what is
    skipped is finalizing objects still caught in reference cycles at exit (their __del__,
    a buffered file's flush), so it is for the project's programs, which close every file
    they write, and not part of tune_process."""
    atexit.register(gc.freeze)


def leave(code: int) -> NoReturn:
    """End a program's process with `code` once its work is done and its files are closed:
    the atexit handlers run (logging's flush and close among them) and the standard streams
    are flushed, then the interpreter's teardown, which frees the objects of torch, numpy
    and scipy one by one for 0.17 s after a run's last file, is skipped (os._exit;
    docs/benchmarks.md). For `infer.py`, whose every file is written and closed first.
    While a thread that is not a daemon still runs (a launcher's pool, say), the process
    exits as Python does, which waits for it."""
    main = threading.main_thread()
    if any(t is not main and not t.daemon and t.is_alive() for t in threading.enumerate()):
        sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can be said
            pass
    os._exit(code)


def tune_process() -> None:
    """What infer.py, train.py, the eval and the app set for their process, and a script of
    one's own can call once at its start: freed memory kept for reuse, one BLAS thread."""
    hold_freed_memory()
    one_blas_thread()


def launch(config_name: str, main: Callable[[], Any], prog: str) -> None:
    """A program's entry point. A plain run (no flags) composes its config once, checks it
    and runs its job here as Hydra's own run does: the same run dir, logging and callbacks
    (Hydra's command line would compose it twice more: for its mode, then for the run).
    With flags (-m, --help, --cfg ...) the command line is checked (check_overrides) and
    left to Hydra's `main`; its task function is `main.__wrapped__`."""
    from hydra._internal.callbacks import Callbacks
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.utils import configure_log, run_job
    from hydra.types import HydraContext, RunMode

    tune_process()
    quick_exit()
    if any(a.startswith("-") for a in sys.argv[1:]):
        sys.argv[1:] = check_overrides(config_name, sys.argv[1:], prog)
        main()
        return
    overrides = quote_paths(sys.argv[1:], POSITIONAL.get(config_name, ()))
    with configs(config_name):
        with reported(prog):
            cfg = composed(config_name, overrides, hydra_node=True)
            check_hydra_dirs(overrides)
        if cfg.hydra.mode is None:
            cfg.hydra.mode = RunMode.RUN
        hydra = GlobalHydra.instance().hydra
        configure_log(cfg.hydra.hydra_logging, cfg.hydra.verbose)
        callbacks = Callbacks(cfg)
        callbacks.on_run_start(config=cfg, config_name=config_name)
        ret = run_job(
            hydra_context=HydraContext(config_loader=hydra.config_loader, callbacks=callbacks),
            task_function=main.__wrapped__,
            config=cfg,
            job_dir_key="hydra.run.dir",
            job_subdir_key=None,
        )
        callbacks.on_run_end(config=cfg, config_name=config_name, job_return=ret)
        ret.return_value  # noqa: B018 -- raises the job's exception, if it failed


def configs(config_name: str):
    """Hydra initialised on the project's configs, for one program (its job name)."""
    from hydra import initialize_config_dir

    return initialize_config_dir(str(CONFIGS), version_base="1.3", job_name=config_name)


def composed(config_name: str, overrides: list[str], hydra_node: bool = False) -> DictConfig:
    """The program's config from overrides, checked (check_config); with Hydra's own node
    (hydra.run.dir, logging ...) when it is run from here."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode
    from omegaconf import open_dict

    cfg = GlobalHydra.instance().hydra.compose_config(
        config_name, overrides, run_mode=RunMode.RUN, from_shell=False
    )
    task = cfg.copy()
    with open_dict(task):
        del task["hydra"]
    check_config(config_name, task)
    return cfg if hydra_node else task


def check_hydra_dirs(argv: list[str]) -> None:
    """Hydra's own run and sweep dirs, when given, can be written, before Hydra makes them."""
    for arg in argv:
        key, _, value = arg.partition("=")
        if key in ("hydra.run.dir", "hydra.sweep.dir") and value:
            check_writable(Path(value.strip("'\"")))


@contextmanager
def reported(prog: str):
    """A bad option or config as one line on stderr and exit code 2."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        yield
    except UsageError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        sys.exit(2)
    except (HydraException, OmegaConfBaseException) as err:
        print(f"{prog}: error: {hydra_message(err)}", file=sys.stderr)
        sys.exit(2)


def hydra_message(err: Exception) -> str:
    """Hydra's and OmegaConf's multi-line reports as one line: what is wrong, and where."""
    text = f"{err}\n{err.__cause__ or ''}"
    lines = [ln.strip() for ln in text.strip().splitlines()]
    keep = [ln for ln in lines if ln and not ln.startswith(("full_key", "object_type"))]
    return "; ".join(dict.fromkeys(keep[:2]))


def check_config(config_name: str, cfg: DictConfig) -> None:
    """What a composed config must satisfy before its program starts: every option in its
    range (the program's dataclass and the model's), and output paths that can be written."""
    check_cache()
    if config_name == "train":  # its output_dir is Hydra's, known only once Hydra runs
        model = shader_config(cfg.model)
        set_threads(cfg.threads)
        try:
            check_lr_interval(cfg.module.get("lr_interval", "epoch"))
        except ValueError as err:
            raise UsageError(str(err)) from None
        if cfg.module.get("fit_views") and "stem" not in model.attention.token_features:
            raise UsageError(
                "module.fit_views reads samples under views, which only a conv stem uses; "
                "add 'stem' to model.attention.features or set module.fit_views=false"
            )
    else:
        check_options(cfg)
    if config_name == "infer" and cfg.output_dir:  # Hydra makes its run dir there
        check_writable(Path(cfg.output_dir))
    if config_name == "eval" and cfg.json:
        check_output_file(Path(cfg.json), "json")
    if config_name == "train" and cfg.export and cfg.export not in names():
        check_output_file(Path(cfg.export), "export")
    if config_name == "train" and cfg.ckpt_path:
        check_input_file(Path(cfg.ckpt_path), "ckpt_path")
    if config_name == "train" and cfg.init_from:
        if cfg.ckpt_path:
            raise UsageError(
                "init_from starts a new run and ckpt_path resumes one; give only one of them "
                "(to resume a run that started from init_from, add init_from=null)"
            )
        try:
            check_input_file(checkpoint_path(cfg.init_from), "init_from")
        except WeightsError as err:
            raise UsageError(f"init_from: {err}") from None


def check_cache() -> None:
    """The spectrum cache's settings (its environment variables) are usable."""
    from spectral_resnet.spectral.spectrum import cache_limit

    try:
        cache_limit()
    except ValueError as err:
        raise UsageError(str(err)) from None


def check_options(cfg: DictConfig):
    """The composed config as its dataclass (InferConfig, EvalConfig): every range checked;
    a bad value is one UsageError naming the option."""
    try:
        return OmegaConf.to_object(cfg)
    except ValueError as err:
        raise UsageError(str(err)) from None


# --------------------------------------------------------------------------- output paths


def check_writable(directory: Path, option: str = "output_dir") -> None:
    """Fail now, before any work, if `directory` cannot be created or written: probe the
    nearest existing ancestor with a throwaway temp dir (permission bits lie to root)."""
    probe = directory
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise UsageError(f"{option} {directory}: {probe} is a file, not a directory")
    try:
        tempfile.TemporaryDirectory(dir=probe).cleanup()
    except OSError:
        raise UsageError(
            f"{option} {directory} is not writable; choose another {option}="
        ) from None


def check_output_file(path: Path, option: str) -> None:
    """An output file's path, checked before the work that fills it: not a directory, and in
    a folder that exists or can be made (`write_text` makes it)."""
    if path.is_dir():
        raise UsageError(f"{option}={path} is a directory; give a file name, e.g. {path / 'x'}")
    check_writable(path.parent, option)


def check_input_file(path: Path, option: str) -> None:
    """An input file that must be there before the work starts."""
    if path.is_dir():
        raise UsageError(f"{option}={path} is a directory; give the file in it")
    if not path.is_file():
        raise UsageError(f"{option}={path}: file not found; check the path")


def write_text(text: str, path: Path) -> Path:
    """Write a text file atomically (`io.write_atomic`), making its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(text.encode(), path)


def write_json(data: dict, path: Path) -> Path:
    """`write_text` of a JSON report (paths and other objects as strings)."""
    return write_text(json.dumps(data, indent=2, default=str), path)


def safe_name(text: str, limit: int = 64) -> str:
    """A name made from user text (a file's stem) that stays one ordinary entry inside the
    output folder: no separators, no leading dot (so never `.` or `..`, never hidden), no
    control characters, at most `limit` characters."""
    text = unicodedata.normalize("NFC", text)
    name = "".join("_" if c in '/\\:*?"<>|' or not c.isprintable() else c for c in text)
    name = name.strip(" .")[:limit].strip(" .")
    return name or "image"


def run_names(target: Path, sample: Path) -> tuple[str, str]:
    """The names of a pair's forward and reverse runs, `<target>_<sample>` from the files'
    stems: distinct even when the two files have the same name (`cat_cat_forward`,
    `cat_cat_reverse`), so a run in both directions never overwrites its own pictures."""
    t, s = safe_name(target.stem), safe_name(sample.stem)
    forward, reverse = f"{t}_{s}", f"{s}_{t}"
    if forward == reverse:
        return f"{forward}_forward", f"{reverse}_reverse"
    return forward, reverse


def run_directions(direction: str, target: Path, sample: Path) -> list[tuple[str, Path, Path]]:
    """(run name, target, sample) of each run of one pair that `direction` asks for."""
    forward, reverse = run_names(target, sample)
    runs = []
    if direction in ("forward", "both"):
        runs.append((forward, target, sample))
    if direction in ("reverse", "both"):
        runs.append((reverse, sample, target))
    return runs


def remove_failed_run_dir(directory: Path, default: bool = False) -> None:
    """Hydra makes its run dir (with .hydra/ and a log) before we run: if this process made
    it and failed before writing anything of its own, leave nothing behind. default: it is
    Hydra's default outputs/<app>/<time>, whose parents go too when they are left empty."""
    if not directory.is_dir() or directory.stat().st_ctime < STARTED - 1:
        return
    if all(p.name == ".hydra" or p.suffix == ".log" for p in directory.iterdir()):
        shutil.rmtree(directory, ignore_errors=True)
        for parent in directory.parents[: 2 if default else 0]:  # outputs/infer/, outputs/
            if parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()


# --------------------------------------------------------------------------- building


def set_threads(threads) -> None:
    """torch's CPU thread count, checked: null keeps torch's default."""
    if threads is None:
        return
    if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= 1024:
        raise UsageError(f"threads must be an integer in [1, 1024] (or null), got {threads!r}")
    torch.set_num_threads(threads)


def build(node: DictConfig, what: str, **kwargs):
    """hydra.utils.instantiate, with a bad value reported as one UsageError naming the group."""
    try:
        return hydra.utils.instantiate(node, **kwargs)
    except InstantiationException as err:  # it wraps our ValueError: report the cause
        cause = err.__cause__ or err
        raise UsageError(f"{what} config: {cause}") from None


def shader_config(node: DictConfig) -> ShaderConfig:
    """The composed `model` node as a ShaderConfig; a bad value is one UsageError."""
    try:
        return OmegaConf.to_object(node)
    except ValueError as err:
        raise UsageError(f"model config: {err}") from None
