"""What a training run leaves behind while it runs, and how it is stopped.

``RunLog`` writes rank 0's JSON lines (log.jsonl), TensorBoard scalars (tb/) and the progress bar;
``LossWindow`` accumulates losses on the device between log lines (no sync per step) and finds the
first non-finite one; ``StopSignals`` turns SIGINT/SIGTERM into a request to checkpoint and stop.
"""

from __future__ import annotations

import json
import math
import signal
import time
from pathlib import Path

import torch

from genzoo.atomic import WriteError, write_text
from genzoo.distributed import Distributed

LOG_FILE = "log.jsonl"  # the record: deterministic, the same for a resumed run as for an uninterrupted one
TIMING_FILE = "timing.jsonl"  # wall-clock facts of the same steps: elapsed seconds, images/s
TB_DIR = "tb"
NO_BAD_STEP = 2**62  # "no non-finite step seen yet"


class LossWindow:
    """The steps since the last log line. A step only appends its (device) tensors: no host sync and no
    arithmetic per step. Once per log line or checkpoint they are folded, in step order, into float64
    host sums (sequential sums: a window restored from a checkpoint adds the same numbers in the same
    order, so an interrupted run logs the uninterrupted run's lines bit for bit)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.reset()

    def reset(self) -> None:
        self.pending: list[tuple[torch.Tensor, torch.Tensor, dict]] = []  # (loss, grad norm, scalars)
        self.first_pending_step = 0
        self.sums, self.steps = [0.0, 0.0], 0  # loss, grad norm; steps folded in
        self.scalars: dict[str, list] = {}  # name -> [sum, count]: a two-player model's named scalars
        self.bad = NO_BAD_STEP  # the first step with a non-finite value
        self.start, self.excluded, self.restored_steps = time.perf_counter(), 0.0, 0

    def add(self, loss: torch.Tensor, grad_norm: torch.Tensor, step: int, scalars: dict | None = None) -> None:
        if not self.pending:
            self.first_pending_step = step
        self.pending.append((loss, grad_norm, scalars or {}))

    def _fold(self) -> None:
        if not self.pending:
            return
        values = torch.stack([torch.stack([loss, norm]).double() for loss, norm, _ in self.pending])
        finite = torch.isfinite(values).all(1)
        named: dict[str, list] = {}
        for i, (_, _, scalars) in enumerate(self.pending):
            for name, value in scalars.items():
                named.setdefault(name, []).append((i, value))
        stacked = {name: torch.stack([v.double() for _, v in items]) for name, items in named.items()}
        for name, items in named.items():
            rows = torch.tensor([i for i, _ in items], device=finite.device)
            finite[rows] &= torch.isfinite(stacked[name])
        host = values.tolist()  # one host sync per fold
        bad = (~finite).nonzero()
        if bad.numel():
            self.bad = min(self.bad, self.first_pending_step + int(bad[0]))
        for loss, norm in host:
            self.sums[0] += loss
            self.sums[1] += norm
        for name, value in stacked.items():
            total = self.scalars.setdefault(name, [0.0, 0])
            for v in value.tolist():
                total[0] += v
                total[1] += 1
        self.steps += len(host)
        self.pending = []

    def state_dict(self) -> dict:
        """The sums of the current window (a host sync: call at checkpoints only), for an exact resume."""
        self._fold()
        return {"sums": list(self.sums), "steps": self.steps, "scalars": {k: list(v) for k, v in self.scalars.items()}}

    def load_state_dict(self, state: dict | None) -> None:
        """Continue the window a checkpoint saved: the next log line averages the same steps as it would
        have without the interruption."""
        self.reset()
        if state:
            self.sums, self.steps = [float(v) for v in state["sums"]], int(state["steps"])
            self.restored_steps = self.steps
            self.scalars = {name: [float(total), int(count)] for name, (total, count) in state["scalars"].items()}

    def exclude(self, seconds: float) -> None:
        """Do not count ``seconds`` (validation, saving) as training time."""
        self.excluded += seconds

    def first_non_finite(self, ctx: Distributed) -> int | None:
        """The first step (1-based) with a NaN/inf loss or gradient on any rank, or None."""
        self._fold()
        bad = int(ctx.min_(torch.tensor(self.bad, dtype=torch.int64, device=self.device)))
        return None if bad == NO_BAD_STEP else bad

    def summary(self, ctx: Distributed, batch_size: int) -> dict:
        """Rank-averaged means since the last call, and throughput in images/s; then reset."""
        self._fold()
        sums = ctx.sum_(torch.tensor(self.sums, dtype=torch.float64, device=self.device))
        loss, grad_norm = (sums / (max(self.steps, 1) * ctx.world_size)).tolist()
        seconds = max(time.perf_counter() - self.start - self.excluded, 1e-9)
        out = {
            "loss": loss,
            "grad_norm": grad_norm,
            "images": (self.steps - self.restored_steps) * batch_size,  # timed in this process
            "seconds": seconds,
            "scalars": {name: total / count for name, (total, count) in self.scalars.items()},
        }
        self.reset()
        return out


class StopSignals:
    """SIGINT/SIGTERM set a flag that the loop reads between steps; nothing else.

    Repeated signals change nothing: on Ctrl-C a torchrun worker gets SIGINT from the terminal and again
    from torchrun's agent, and must still save. SIGKILL (or torchrun's own timeout) is the hard stop.
    """

    def __init__(self):
        self.received: int | None = None
        self.previous: dict = {}

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self.previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals to the caller
                pass

    def _handle(self, signum, frame) -> None:
        if self.received is None:
            self.received = signum

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        self.previous = {}


def truncate_log(path: Path, step: int) -> None:
    """Drop log lines after ``step`` (left by a run that crashed after its last checkpoint)."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("step", math.inf) <= step:
                keep.append(line)
        except json.JSONDecodeError:
            continue
    write_text(path, "".join(line + "\n" for line in keep))


def _append(path: Path, record: dict) -> None:
    try:
        with open(path, "a") as f:
            f.write(json.dumps(record) + "\n")
    except OSError as err:
        raise WriteError(f"cannot write {path}: {err.strerror or err}") from None


class RunLog:
    """Rank 0's outputs: JSON lines in log.jsonl, TensorBoard scalars in tb/, and a tqdm bar."""

    def __init__(self, run_dir: Path, start_step: int, total: int | None, config, enabled: bool):
        self.path, self.max_time, self.enabled = run_dir / LOG_FILE, config.max_time, enabled
        self.timing_path = run_dir / TIMING_FILE
        self.writer = self.bar = None
        if not enabled:
            return
        from tensorboardX import SummaryWriter
        from tqdm.auto import tqdm

        truncate_log(self.path, start_step)
        truncate_log(self.timing_path, start_step)
        self.writer = SummaryWriter(str(run_dir / TB_DIR), purge_step=start_step)
        self.bar = tqdm(
            total=total, initial=start_step, unit="step", desc="train", dynamic_ncols=True, disable=not config.progress
        )

    def write(self, record: dict, timing: dict | None = None) -> None:
        """One line of the record (log.jsonl) and its wall-clock facts (timing.jsonl), also to TensorBoard."""
        if not self.enabled:
            return
        _append(self.path, record)
        if timing is not None:
            _append(self.timing_path, timing)
        step = record["step"]
        merged = {**record, **(timing or {})}
        for key in ("loss", "lr", "grad_norm", "images_per_sec"):
            if key in merged:
                self.writer.add_scalar(f"train/{key}", merged[key], step)
        for key, value in (record.get("valid") or {}).items():
            if isinstance(value, (int, float)):
                self.writer.add_scalar(f"valid/{key}", value, step)
        for group, prefix in (("scalars", "train/"), ("lrs", "train/lr/")):
            for key, value in (record.get(group) or {}).items():
                self.writer.add_scalar(f"{prefix}{key}", value, step)
        if "loss" in record:
            postfix = {"loss": f"{record['loss']:.4g}"}
            if self.max_time is not None and "elapsed" in merged:
                postfix["time"] = f"{merged['elapsed']:.0f}/{self.max_time:.0f}s"
            self.bar.set_postfix(postfix, refresh=False)

    def advance(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def message(self, text: str) -> None:
        if self.bar is not None and not self.bar.disable:
            self.bar.write(text)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.close()
