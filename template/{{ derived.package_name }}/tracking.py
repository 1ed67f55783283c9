"""Where training numbers go: metrics.jsonl always, TensorBoard and Weights & Biases when they are installed.

metrics.jsonl has one JSON object per line: per step {"step", "loss", "lr", "grad_norm", "tokens_per_s",
"mfu", "time_s"} and per evaluation {"step", "val_loss", "val_bpb"}. It is the source of truth: loss.png
is drawn from it (at the end of training, or any time with `plot`), and a resumed run appends to it.

TensorBoard: used when the `tensorboard` package is installed; events go to <run>/tensorboard/
(`tensorboard --logdir runs`). W&B: used when `wandb` is installed and WANDB_PROJECT is set (wandb's own
variable; nothing is sent to a server unless you opted in that way). Neither is a dependency.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import time
from pathlib import Path
from typing import Any

from .cli import command
from .config import COMMAND

METRICS = "metrics.jsonl"  # in the run directory

class MetricsLog:
    """Append rows to <run>/metrics.jsonl and mirror their numbers to the optional trackers."""

    def __init__(self, run_dir: Path, config: dict[str, Any], append: bool, enabled: bool = True):
        self.path = run_dir / METRICS
        self.file = open(self.path, "a" if append else "w") if enabled else None
        self.trackers: list[Any] = []
        if not enabled:
            return
        if importlib.util.find_spec("tensorboard") is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.trackers.append(_TensorBoard(SummaryWriter(log_dir=str(run_dir / "tensorboard"))))
        if importlib.util.find_spec("wandb") is not None and os.environ.get("WANDB_PROJECT"):
            import wandb

            self.trackers.append(_WandB(wandb.init(config=config, name=run_dir.name, resume="allow")))

    def write(self, row: dict[str, Any]) -> None:
        if self.file is None:
            return
        self.file.write(json.dumps(row) + "\n")
        self.file.flush()  # a crash loses no finished step
        numbers = {k: v for k, v in row.items() if k != "step" and isinstance(v, (int, float))}
        for tracker in self.trackers:
            tracker.log(row["step"], numbers)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
        for tracker in self.trackers:
            tracker.close()
        self.trackers = []


class Throughput:
    """Tokens/s and model FLOPs utilisation per training step (MFU: achieved FLOP/s over the hardware's peak;
    Chowdhery et al., 2022, PaLM, appendix B), and the totals for the run's summary."""

    def __init__(self, tokens_per_step: int, flops_per_token: int, peak_flops: float):
        self.tokens_per_step, self.flops_per_token, self.peak_flops = tokens_per_step, flops_per_token, peak_flops
        self.started, self.train_time, self.tokens = time.perf_counter(), 0.0, 0

    def step(self, seconds: float) -> dict[str, float]:
        """The metrics.jsonl numbers of a step that took `seconds`."""
        self.train_time += seconds
        self.tokens += self.tokens_per_step
        tokens_per_s = self.tokens_per_step / seconds
        mfu = tokens_per_s * self.flops_per_token / self.peak_flops
        return {"tokens_per_s": round(tokens_per_s, 1), "mfu": round(mfu, 4),
                "time_s": round(time.perf_counter() - self.started, 3)}


class _TensorBoard:
    def __init__(self, writer: Any):
        self.writer = writer

    def log(self, step: int, numbers: dict[str, float]) -> None:
        for key, value in numbers.items():
            self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        self.writer.close()


class _WandB:
    def __init__(self, run: Any):
        self.run = run

    def log(self, step: int, numbers: dict[str, float]) -> None:
        self.run.log(numbers, step=step)

    def close(self) -> None:
        self.run.finish()


def read_metrics(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def plot_losses(metrics_path: Path, png: Path, title: str, band: tuple[float, float] | None = None) -> Path:
    """Training loss per step and validation loss per evaluation, from metrics.jsonl, as a PNG; `band`
    (low, high) shades where the final validation loss is expected (see `check training_1m`)."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed (servers, CI)
    import matplotlib.pyplot as plt

    rows = read_metrics(metrics_path)
    train = [(r["step"], r["loss"]) for r in rows if r.get("loss") is not None]
    val = [(r["step"], r["val_loss"]) for r in rows if "val_loss" in r]
    if not train and not val:
        raise ValueError(f"{metrics_path} holds no losses to plot")
    fig, ax = plt.subplots(figsize=(7, 4))
    if train:
        ax.plot(*zip(*train), lw=0.8, alpha=0.7, label="train")
    if val:
        ax.plot(*zip(*val), marker="o", label="validation")
    if band:
        ax.axhspan(*band, color="tab:green", alpha=0.2,
                   label=f"expected final validation loss ({band[0]:.2f} to {band[1]:.2f})")
    ax.set(xlabel="step", ylabel="loss (nats/token)", title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)
    return png


def find_run(run: str | Path | None = None) -> Path:
    """--run DIR, else the run directory in runs/ whose metrics.jsonl changed last."""
    if run:
        path = Path(run)
        if not (path / METRICS).is_file():
            raise FileNotFoundError(f"{path} is not a run directory (no metrics.jsonl)")
        return path
    found = sorted(Path("runs").glob(f"*/{METRICS}"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise FileNotFoundError("no run found in runs/: train first, or pass --run")
    return found[-1].parent


@command("plot", help="draw a run's loss curve (loss.png) from metrics.jsonl",
         flags=lambda p: p.add_argument("--run", metavar="DIR", help="run directory (default: the newest in runs/)"),
         description="Redraw <run>/loss.png at any time, also while the run is training.\n\n"
                     f"example:\n  {COMMAND} plot --run runs/tiny")
def plot_command(args: argparse.Namespace) -> None:
    run = find_run(args.run)
    print(plot_losses(run / METRICS, run / "loss.png", run.name))
