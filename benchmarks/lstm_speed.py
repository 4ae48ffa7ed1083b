"""Benchmark: PixelRNN's LSTM layers (``genzoo.nn.lstm2d``) against the textbook form of the same layers.

    python benchmarks/lstm_speed.py --threads 1 > benchmarks/logs/lstm-speed.log

The textbook form is how the layers read in [1] and in most code: the Row LSTM's state-to-state
convolution as one ``Conv1d`` call per row, the cell as plain autograd ops on the group-major gate maps
(``o, f, i, g = split(gates)``, ``c = sigmoid(f) c + sigmoid(i) tanh(g)``, ``h = sigmoid(o) tanh(c)``).
genzoo's layers compute the same function with the gates held gates-first and the cell as one autograd
node (``genzoo.nn.lstm2d.gated_cell``). For each model at [1]'s binarized-MNIST size (7 layers, h = 16), on
one batch: training steps (loss, backward, Adam) of the model as it is and of the same model with every
layer's forward replaced by the textbook one, interleaved in one process; images/s of both, their ratio
(``speedup``), and the largest difference of the two losses and gradients (the same function: float
rounding only). One JSON line per model and batch size, appended to benchmarks/results.jsonl unless
``--no-save``.

[1] A. van den Oord, N. Kalchbrenner, K. Kavukcuoglu, "Pixel Recurrent Neural Networks", ICML 2016.
"""

from __future__ import annotations

import argparse
import sys
import time
import types
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_nll import cpu_provenance, record_result  # noqa: E402


def textbook_cell(gates: torch.Tensor, c: torch.Tensor, groups: int, dim: int):
    """The LSTM update as plain autograd ops; gates group-major ``[group][o, f, i, g][m]`` along ``dim``."""
    dim = dim % gates.dim()
    o, f, i, g = (part.flatten(dim, dim + 1) for part in gates.unflatten(dim, (groups, 4, -1)).unbind(dim + 1))
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def textbook_row_lstm(self, s: torch.Tensor, image=None) -> torch.Tensor:
    gates = self.input_to_state(s)
    n, _, rows, width = s.shape
    h = c = s.new_zeros(n, self.hidden, width)
    out = []
    for row in gates.unbind(2):
        h, c = textbook_cell(row + self.state_to_state(h), c, self.groups, 1)
        out.append(h)
    return s + self.output(torch.stack(out, 2))


def textbook_diagonal_bilstm(self, s: torch.Tensor, image=None) -> torch.Tensor:
    from genzoo.nn.lstm2d import skew, unskew

    gates_rl = self.input_to_state_rl(s)
    if self.pixels_to_state is not None:
        gates_rl = gates_rl + self.pixels_to_state(image)
    n, _, rows, width = s.shape
    hidden = self.hidden
    states = []
    for gates, linear in ((self.input_to_state(s), self.left_to_right), (gates_rl.flip(3), self.right_to_left)):
        skewed = skew(gates).permute(3, 0, 2, 1)  # (W + H - 1, N, H, 4h): one diagonal per step
        inside = skew(gates.new_ones(1, 1, rows, width))[0, 0].t()[:, :, None]
        h = c = gates.new_zeros(n, rows, hidden)
        out = []
        for diagonal, live in zip(skewed.unbind(0), inside.unbind(0)):
            above = F.pad(h, (0, 0, 1, 0))[:, :rows]
            h, c = textbook_cell(diagonal + linear(torch.cat([above, h], -1)), c, self.groups, -1)
            h, c = h * live, c * live
            out.append(h)
        states.append(unskew(torch.stack(out, -1).transpose(1, 2), width))
    forward, backward = states
    backward = F.pad(backward.flip(3)[:, :, :-1], (0, 0, 1, 0))  # row r gets row r-1
    return s + self.output(forward + backward)


TEXTBOOK = {"row-lstm": textbook_row_lstm, "diagonal-bilstm": textbook_diagonal_bilstm}


class Stepper:
    """Training steps of one model on one batch, timed in chunks that can be interleaved with another's."""

    def __init__(self, model, x):
        self.model, self.x, self.images, self.wall = model, x, 0, 0.0
        self.optimizer = torch.optim.Adam(model.parameters(), fused=True)

    def step(self) -> None:
        self.optimizer.zero_grad()
        (-self.model.log_prob(self.x).mean()).backward()
        self.optimizer.step()

    def run(self, seconds: float) -> None:
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            self.step()
            self.images += self.x.shape[0]
        self.wall += time.perf_counter() - start


def measure(name: str, batch: int, seconds: float, rounds: int) -> dict:
    import genzoo

    torch.manual_seed(0)
    fast = genzoo.create(name, image_shape=(1, 28, 28), levels=2)
    textbook = genzoo.create(name, image_shape=(1, 28, 28), levels=2)
    textbook.load_state_dict(fast.state_dict())
    for layer in textbook.layers:
        layer.forward = types.MethodType(TEXTBOOK[name], layer)
    x = (torch.rand(batch, 1, 28, 28, generator=torch.Generator().manual_seed(1)) < 0.3).long()
    losses, grads = [], []
    for model in (fast, textbook):  # the same function: compare one loss and its gradients
        model.zero_grad()
        loss = -model.log_prob(x).mean()
        loss.backward()
        losses.append(float(loss.detach()))
        grads.append([p.grad.clone() for p in model.parameters()])
    steppers = [Stepper(fast, x), Stepper(textbook, x)]
    for stepper in steppers:
        stepper.step()  # warm-up
    for _ in range(rounds):
        for stepper in steppers:
            stepper.run(seconds / rounds)
    rate = [s.images / s.wall for s in steppers]
    return {
        "benchmark": "lstm_speed",
        "model": name,
        "batch_size": batch,
        "images_per_sec": rate[0],
        "textbook_images_per_sec": rate[1],
        "speedup": rate[0] / rate[1],
        "loss_difference": abs(losses[0] - losses[1]),
        "max_gradient_difference": max(float((a - b).abs().max()) for a, b in zip(*grads)),
        **cpu_provenance(),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", action="append", choices=sorted(TEXTBOOK), help="default: both")
    p.add_argument("--batch-size", type=int, action="append", help="images per step (repeatable; default 16)")
    p.add_argument("--seconds", type=float, default=12.0, help="timed seconds of each form")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-save", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    for name in args.model or sorted(TEXTBOOK):
        for batch in args.batch_size or [16]:
            record = measure(name, batch, args.seconds, args.rounds)
            print(
                f"{name:16s} batch {batch:3d}: {record['images_per_sec']:7.2f} img/s, textbook "
                f"{record['textbook_images_per_sec']:7.2f}, speedup {record['speedup']:.3f} (loss difference "
                f"{record['loss_difference']:.2g}, gradients {record['max_gradient_difference']:.2g})",
                file=sys.stderr,
            )
            record_result(record, save=not args.no_save)


if __name__ == "__main__":
    main()
