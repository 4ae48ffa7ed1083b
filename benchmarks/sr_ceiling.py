"""What the digit-accuracy score of MNIST super-resolution allows a faithful sampler and a decision rule.

    python benchmarks/sr_ceiling.py --data binarized-mnist --scale 4 --data-dir ../shared/data

The score (benchmarks/conditional.py) reads each super-resolved test image with the digit classifier and
counts it right when it reads the true digit. A faithful conditional model samples x ~ p(x | y): its
sample shows digit c with probability p(c | y), so one sample is right with probability
E[sum_c p(c | y) M(c, c_true)], M the classifier's confusion matrix on real images (M(c, c') = P(it
reads c' | a real image of c)). A deterministic output (the L2 CNN's mean image) can aim at the likeliest
digit instead: a decision rule is right with up to E[M(argmax_c p(c | y), c_true)], the Bayes rate. Where
the low-resolution input leaves the digit ambiguous, a single faithful sample is behind a decision rule.

p(c | y) is estimated by a CNN that reads the low-resolution condition itself, trained on the conditions
of MNIST's labelled training images (binarized afresh every epoch for binarized MNIST, as its images were
drawn), its temperature fitted on 10,000 held-out ones (Guo et al. 2017), scored on the benchmark's own test
conditions (the whole split and the benchmark's seeded subset of ``--eval-images``). For a calibrated
estimate q of p, E[sum_c q_c^2] <= E[sum_c p_c^2] (q is a coarsening of p) and its decision accuracy is
at most the Bayes rate: both figures are lower bounds on what a perfect sampler and the best decision
reach, tight as far as the condition classifier is good. Prints one JSON line (appended to
benchmarks/results.jsonl unless --no-save).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from train_nll import command_line, device_name, record_result  # noqa: E402


def condition_classifier(channels: int, size: int) -> nn.Module:
    """A small CNN over a (channels, size, size) condition scaled to [0, 1] -> 10 logits."""
    return nn.Sequential(
        nn.Conv2d(channels, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
        nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Dropout(0.3),
        nn.Linear(128 * size * size, 256), nn.ReLU(), nn.Dropout(0.3), nn.Linear(256, 10),
    )  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="binarized-mnist", choices=("binarized-mnist", "mnist"))
    p.add_argument("--scale", type=int, default=4)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--eval-images", type=int, default=1000, help="the benchmark's scored subset")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-save", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    started = time.perf_counter()

    from genzoo.data import load_dataset
    from genzoo.data.pairs import downsample, downsample_levels
    from genzoo.tasks import conditional

    mnist = load_dataset("mnist", args.data_dir)
    target = load_dataset(args.data, args.data_dir)
    binary = target.levels == 2
    cond_levels = downsample_levels(target.levels, args.scale)
    train_x, train_c = mnist.train.images, mnist.train.labels.long()
    held_x, held_c = train_x[-10000:], train_c[-10000:]  # calibration split (not trained on)
    train_x, train_c = train_x[:-10000], train_c[:-10000]

    def conditions(images: torch.Tensor, generator=None) -> torch.Tensor:
        if binary:  # the binarized MNIST recipe: one Bernoulli draw per pixel at its intensity
            images = (torch.rand(images.shape, generator=generator) < images.float() / 255).to(torch.uint8)
        return downsample(images, args.scale, target.levels).float() / (cond_levels - 1)

    net = condition_classifier(1, 28 // args.scale)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    steps_per_epoch = len(train_x) // 128
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.epochs * steps_per_epoch)
    held_y = conditions(held_x, torch.Generator().manual_seed(1))
    for epoch in range(args.epochs):
        net.train()
        y_all = conditions(train_x)
        order = torch.randperm(len(train_x))
        for i in range(steps_per_epoch):
            idx = order[i * 128 : (i + 1) * 128]
            loss = F.cross_entropy(net(y_all[idx]), train_c[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        net.eval()
        with torch.no_grad():
            held_logits = net(held_y)
        print(
            f"epoch {epoch + 1}: held-out accuracy {(held_logits.argmax(1) == held_c).float().mean():.4f}, "
            f"nll {F.cross_entropy(held_logits, held_c):.4f}",
            file=sys.stderr,
            flush=True,
        )
    # temperature scaling on the held-out conditions (Guo et al. 2017), a 1-D fit of log T
    log_t = torch.zeros((), requires_grad=True)
    fit = torch.optim.LBFGS([log_t], lr=0.5, max_iter=100)

    def closure():
        fit.zero_grad()
        value = F.cross_entropy(held_logits / log_t.exp(), held_c)
        value.backward()
        return value

    fit.step(closure)
    temperature = float(log_t.detach().exp())

    # the benchmark's test conditions and labels; the digit classifier's confusion on the real test images
    test_y = downsample(target.test.images, args.scale, target.levels).float() / (cond_levels - 1)
    classifier, labels = conditional.digit_classifier(target_pairs(target, args.scale), args.data_dir)
    labels = labels.long()
    with torch.no_grad():
        probs = F.softmax(net(test_y) / temperature, 1).double()
    read = conditional.classifier_digits(classifier, target.test.images.float() / (target.levels - 1))
    confusion = torch.zeros(10, 10, dtype=torch.float64)
    confusion.index_put_((labels, read), torch.ones(len(labels), dtype=torch.float64), accumulate=True)
    confusion /= confusion.sum(1, keepdim=True)  # M[c, c'] = P(read c' | real image of c)

    def figures(rows: torch.Tensor) -> dict:
        pr, c = probs[rows], labels[rows]
        return {
            "n": int(len(rows)),
            "decision_accuracy": float((pr.argmax(1) == c).double().mean()),  # ~ E max_c p(c|y)
            "expected_max_p": float(pr.max(1).values.mean()),
            "nll_nats": float(-pr[torch.arange(len(c)), c].log().mean()),
            "perfect_sample_class_agreement": float(pr[torch.arange(len(c)), c].mean()),  # E p(c_true|y)
            "perfect_sample_accuracy": float((pr @ confusion)[torch.arange(len(c)), c].mean()),
            "bayes_decision_accuracy": float(confusion[pr.argmax(1), c].mean()),
        }

    subset = conditional.evaluation_subset(len(target.test), args.eval_images)
    record = {
        "benchmark": "sr_ceiling",
        "data": target.name,
        "scale": args.scale,
        "classifier_on_real_test": float((read == labels).double().mean()),
        "condition_classifier_temperature": temperature,
        "epochs": args.epochs,
        "full_test": figures(torch.arange(len(labels))),
        "eval_subset": figures(subset),
        "wall_seconds": time.perf_counter() - started,
        "device": device_name(torch.device("cpu")),
        "torch": torch.__version__,
        "command": command_line(),
    }
    record_result(record, save=not args.no_save)


def target_pairs(target, scale: int):
    from genzoo.data.pairs import superres_dataset

    return superres_dataset(target, scale)


if __name__ == "__main__":
    main()
