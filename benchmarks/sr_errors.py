"""Benchmark: where the samples of a super-resolution model are read as the wrong digit, and why.

    python benchmarks/sr_errors.py --name binarized-mnist-sr4-pixelcnn --scale 4 --data binarized-mnist \\
        --data-dir ../shared/data

For a finished ``benchmarks/conditional.py`` run (its directory ``benchmarks/runs/conditional-NAME``, its
best weights and its L2 CNN), on the same seeded test conditions and the same sample seeds as the
benchmark's scoring: the digit classifier's accuracy on each sample (the benchmark's figure), on the
majority vote of the samples of a condition, on "any" and "all" of them; the L2 CNN's and the truth's
accuracy; the samples' accuracy split by whether the L2 CNN and the truth are read correctly; how often a
sample is read as the L2 CNN's digit; and a labelled picture of the conditions whose samples are most
often wrong (input | L2 CNN | samples | truth; each row titled "true digit: the L2 CNN's as read | the
samples' as read"). Also the model's own log p(sample | y) of right and wrong samples, and the accuracy of
the most likely of a condition's samples (a choice the model makes without the classifier or the truth:
does it prefer its right drawings?). One JSON line,
appended to benchmarks/results.jsonl unless ``--no-save``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from train_nll import command_line, device_name, record_result  # noqa: E402


def rate(mask: torch.Tensor) -> float | None:
    return float(mask.double().mean()) if mask.numel() else None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--name", required=True, help="the conditional.py run name (benchmarks/runs/conditional-NAME)")
    p.add_argument("--scale", type=int, required=True)
    p.add_argument("--data", default="binarized-mnist")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--eval-images", type=int, default=1000)
    p.add_argument("--samples", type=int, default=4)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--figure-rows", type=int, default=10)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-save", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()

    import genzoo
    from genzoo.data import load_dataset
    from genzoo.data.pairs import conditional_dataset
    from genzoo.tasks import baselines, conditional

    data = conditional_dataset(load_dataset(args.data, args.data_dir), "superres", args.scale)
    run_dir = HERE / "runs" / f"conditional-{args.name}"
    model = genzoo.load(run_dir, weights="auto")
    regression = baselines.load_regression(run_dir / "regression.safetensors")
    classifier, labels = conditional.digit_classifier(data, args.data_dir)
    if classifier is None:
        raise SystemExit(f"sr_errors.py: no digit classifier for {data.source} (MNIST super-resolution only)")
    index = conditional.evaluation_subset(len(data.test), args.eval_images)
    x, y = data.test.images[index].long(), data.test.labels[index].long()
    digit = torch.as_tensor(labels)[index]
    truth = conditional.intensity(x, data.levels)
    drawn = conditional.draw_samples(model, y, args.samples, temperature=args.temperature)  # benchmark's seeds
    pictures = conditional.intensity(drawn, data.levels)  # (K, N, C, H, W)
    with torch.no_grad():
        mean_image = regression.predict(y)  # the L2 CNN's estimate of E[x | y], intensities
        read = torch.stack([conditional.classifier_digits(classifier, s) for s in pictures])  # (K, N)
        read_truth = conditional.classifier_digits(classifier, truth)
        read_l2 = conditional.classifier_digits(classifier, mean_image)
        log_p = torch.stack(
            [torch.cat([model.log_prob(s[i : i + 250], y[i : i + 250]) for i in range(0, len(y), 250)]) for s in drawn]
        ).double()  # (K, N) nats
    correct = read == digit
    votes = torch.nn.functional.one_hot(read, 10).sum(0)  # (N, 10)
    majority = votes.argmax(1)  # ties: the smaller digit
    truth_ok, l2_ok = read_truth == digit, read_l2 == digit
    wrong_share = 1 - correct.double().mean(0)  # per condition
    record = {
        "benchmark": "sr_errors",
        "name": args.name,
        "data": data.name,
        "weights": model.checkpoint_info.get("weights"),
        "n_images": len(index),
        "samples": args.samples,
        "temperature": args.temperature,
        "accuracy_per_sample": rate(correct),
        "accuracy_majority_vote": rate(majority == digit),
        "accuracy_any_sample": rate(correct.any(0)),
        "accuracy_all_samples": rate(correct.all(0)),
        "accuracy_most_likely_sample": rate(correct.gather(0, log_p.argmax(0, keepdim=True))),
        "log_p_right_samples": float(log_p[correct].mean()) if correct.any() else None,
        "log_p_wrong_samples": float(log_p[~correct].mean()) if (~correct).any() else None,
        "accuracy_l2_cnn": rate(l2_ok),
        "accuracy_truth": rate(truth_ok),
        "per_sample_where_truth_read_right": rate(correct[:, truth_ok]),
        "per_sample_where_truth_read_wrong": rate(correct[:, ~truth_ok]),
        "per_sample_where_l2_right": rate(correct[:, l2_ok]),
        "per_sample_where_l2_wrong": rate(correct[:, ~l2_ok]),
        "conditions_l2_wrong": int((~l2_ok).sum()),
        "sample_reads_as_l2_digit": rate(read == read_l2),
        "mean_top_vote_share": float(votes.max(1).values.double().mean() / args.samples),
        "conditions_with_a_wrong_sample": int((~correct).any(0).sum()),
        "conditions_with_every_sample_wrong": int((~correct).all(0).sum()),
    }
    worst = wrong_share.argsort(descending=True, stable=True)[: args.figure_rows]
    low = conditional.condition_picture(y[worst], data.image_shape, data.condition_levels)
    columns = [("input", low), (f"L2 CNN ({record['accuracy_l2_cnn']:.3f})", mean_image[worst])]
    columns += [(f"sample {k + 1}", pictures[k][worst]) for k in range(args.samples)]
    columns.append(("truth", truth[worst]))
    titles = [f"{int(digit[i])}: {int(read_l2[i])} | {''.join(str(int(d)) for d in read[:, i])}" for i in worst]
    suffix = "" if args.temperature == 1.0 else f"-T{args.temperature:g}"
    figure = conditional.comparison_figure(
        columns, HERE / "conditional" / f"{args.name}-errors{suffix}.png", row_titles=titles, scale=1.0
    )
    record.update(
        figure=str(figure.relative_to(HERE)),
        wall_seconds=time.perf_counter() - started,
        device=device_name(torch.device("cpu")),
        torch=torch.__version__,
        command=command_line(),
    )
    for key, value in record.items():
        if key.startswith(("accuracy", "per_sample", "conditions", "sample_", "mean_", "log_p")):
            print(f"{key:36s} {value}", file=sys.stderr)
    record_result(record, save=not args.no_save)


if __name__ == "__main__":
    main()
