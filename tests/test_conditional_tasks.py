"""Super-resolution and colorization: the pair datasets (shapes, levels, rounding, split by photograph,
checksums), the metrics on inputs with known answers, the baselines, the PNG condition reader, and a
tiny end-to-end run through the shared trainer, the evaluation and the picture."""

import hashlib
import math

import numpy as np
import pytest
import torch
from PIL import Image

import genzoo
from genzoo.data import load_dataset
from genzoo.data.base import DataError, DynamicallyBinarizedSplit, ImageDataset, ImageSplit
from genzoo.data.pairs import colorize_dataset, downsample, superres_dataset, to_gray
from genzoo.tasks import baselines, conditional


def synthetic(levels, shape, n=24, seed=0, labels=True):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, levels, (n, *shape), generator=g).to(torch.uint8)
    y = torch.arange(n) % 3 if labels else None
    split = ImageSplit(x, y)
    return ImageDataset("toy", levels, split, ImageSplit(x[:8], None if y is None else y[:8]), split, 3)


# ---- data ----------------------------------------------------------------------------------------------


def test_downsample_rounds_box_averages_half_up_and_counts_ones_for_binary():
    x = torch.tensor([[[[0, 1, 1, 2], [1, 1, 2, 2], [3, 3, 0, 0], [3, 3, 0, 1]]]])
    assert downsample(x, 2, 4).tolist() == [[[[1, 2], [3, 0]]]]  # sums 3, 7, 12, 1 -> (s + 2) // 4
    b = torch.tensor([[[[0, 1, 1, 1], [1, 1, 1, 1], [0, 0, 0, 0], [0, 0, 0, 1]]]])
    assert downsample(b, 2, 2).tolist() == [[[[3, 4], [0, 1]]]]  # counts of ones: 5 levels
    with pytest.raises(ValueError, match="dividing"):
        downsample(x, 3, 4)


def test_superres_dataset_of_the_bundled_digits():
    digits = load_dataset("digits")
    data = superres_dataset(digits, 2)
    assert data.name == "digits-superres2" and data.task == "superres" and data.scale == 2
    assert data.image_shape == (1, 8, 8) and data.condition_shape == (1, 4, 4) and data.condition_levels == 17
    assert data.levels == 17 and data.num_classes is None
    for s in ("train", "valid", "test"):
        split, original = data.split(s), digits.split(s)
        assert torch.equal(split.images, original.images)
        assert split.labels.dtype == torch.uint8 and split.labels.shape == (len(split), 1, 4, 4)
        assert torch.equal(split.labels, downsample(original.images, 2, 17))
        assert torch.equal(data.classes[s], original.labels)
    assert int(data.train.labels.max()) <= 16
    assert data.model_options() == {"condition_shape": [1, 4, 4], "condition_levels": 17}
    assert "given 1x4x4" in data.describe()


def test_superres_of_binary_data_keeps_the_counts():
    data = superres_dataset(synthetic(2, (1, 8, 8)), 4)
    assert data.condition_levels == 17 and data.condition_shape == (1, 2, 2)
    counts = data.train.images.long().reshape(-1, 1, 2, 4, 2, 4).sum((3, 5))
    assert torch.equal(data.train.labels.long(), counts)


def test_conditional_data_refuses_a_dynamic_binarization_and_bad_scales():
    toy = synthetic(256, (1, 8, 8))
    dynamic = ImageDataset("dyn", 2, DynamicallyBinarizedSplit(toy.train.images), toy.valid, toy.test)
    with pytest.raises(ValueError, match="afresh"):
        superres_dataset(dynamic, 2)
    with pytest.raises(ValueError, match="dividing"):
        superres_dataset(toy, 3)
    with pytest.raises(ValueError, match="RGB"):
        colorize_dataset(toy)


def test_colorize_dataset_uses_the_bt601_luminance_of_pil():
    toy = synthetic(256, (3, 5, 6))
    data = colorize_dataset(toy)
    assert data.condition_shape == (1, 5, 6) and data.condition_levels == 256 and data.task == "colorize"
    gray = data.train.labels[:, 0].numpy().astype(int)
    pil = np.stack([np.asarray(Image.fromarray(im.permute(1, 2, 0).numpy()).convert("L")) for im in toy.train.images])
    assert np.abs(gray - pil.astype(int)).max() <= 1
    assert to_gray(torch.tensor([[[[255]], [[255]], [[255]]]])).item() == 255


def test_photos32_is_split_by_photograph_and_checksummed(monkeypatch):
    from genzoo.data import photos

    data = load_dataset("photos32")
    assert data.image_shape == (3, 32, 32) and data.levels == 256
    assert (len(data.train), len(data.valid), len(data.test)) == (6574, 260, 371)
    split_photos = data.info["split_photos"]
    names = [n for s in ("train", "valid", "test") for n in split_photos[s]]
    assert len(names) == len(set(names)) == len(photos.PHOTOS)  # no photograph in two splits
    assert "motorcycle_right" not in names
    counts = data.info["patches_per_photo"]
    for s in ("train", "valid", "test"):
        assert sum(counts[n] for n in split_photos[s]) == len(data.split(s))
    first = photos.photo_patches("chelsea")  # the test split starts with the patches of chelsea
    assert torch.equal(data.test.images[: len(first)], torch.from_numpy(first))
    assert hashlib.sha256(first.tobytes()).hexdigest() == photos.PHOTOS["chelsea"][4]
    entry = photos.PHOTOS["rocket"]
    monkeypatch.setitem(photos.PHOTOS, "rocket", (*entry[:4], "0" * 64))
    with pytest.raises(DataError, match="rocket"):
        load_dataset("photos32")


# ---- metrics -------------------------------------------------------------------------------------------


def test_metrics_on_known_inputs():
    truth = torch.full((3, 1, 8, 8), 0.5, dtype=torch.float64)
    assert conditional.psnr(truth + 0.1, truth) == pytest.approx(20.0)
    assert conditional.psnr(truth, truth) == conditional.PSNR_CAP
    assert conditional.ssim(truth, truth) == pytest.approx(1.0)
    ramp = torch.linspace(0, 1, 64, dtype=torch.float64).reshape(1, 1, 8, 8).repeat(3, 1, 1, 1)
    assert conditional.ssim(1 - ramp, ramp) < 0
    y = torch.randint(0, 17, (3, 1, 2, 2))
    assert conditional.consistency(baselines.nearest(y, 4, 17), y, 17) == 0.0
    assert conditional.consistency(baselines.nearest(y, 4, 17) + 0.1, y, 17) == pytest.approx(0.01)
    assert conditional.consistency(baselines.gray(y, 17), y, 17) == pytest.approx(0.0)
    two = torch.stack([torch.zeros(3, 1, 8, 8), torch.ones(3, 1, 8, 8)])
    assert conditional.diversity(two) == pytest.approx(math.sqrt(0.5))
    assert conditional.diversity(two[:1]) == 0.0
    assert conditional.colourfulness(torch.rand(2, 1, 4, 4).expand(-1, 3, -1, -1)) == pytest.approx(0.0)
    red = torch.zeros(1, 3, 4, 4, dtype=torch.float64)
    red[:, 0] = 1.0
    assert conditional.colourfulness(red) == pytest.approx(0.3 * math.hypot(255.0, 127.5))


def test_classifier_accuracy_feeds_the_classifier_its_own_levels():
    class Stub:
        levels = 2

        def embed(self, images):
            assert images.max() <= 1
            return None, (images.flatten(1).mean(1) > 0.5).long()

    images = torch.tensor([0.0, 1.0, 1.0, 0.0]).reshape(4, 1, 1, 1)
    assert conditional.classifier_accuracy(Stub(), images, torch.tensor([0, 1, 0, 0])) == 0.75


def test_task_of_model_shapes():
    assert conditional.task_of((1, 28, 28), (1, 7, 7)) == ("superres", 4)
    assert conditional.task_of((3, 32, 32), (1, 32, 32)) == ("colorize", 1)
    with pytest.raises(ValueError):
        conditional.task_of((1, 28, 28), (1, 28, 28))


def test_load_condition_png_takes_the_size_or_an_integer_multiple(tmp_path):
    low = (np.arange(49).reshape(7, 7) * 5).astype(np.uint8)
    Image.fromarray(low).save(tmp_path / "low.png")
    Image.fromarray(low.repeat(3, 0).repeat(3, 1)).save(tmp_path / "big.png")
    a = conditional.load_condition_png(tmp_path / "low.png", (1, 7, 7), 17)
    b = conditional.load_condition_png(tmp_path / "big.png", (1, 7, 7), 17)
    assert a.shape == (1, 1, 7, 7) and a.dtype == torch.uint8 and torch.equal(a, b)
    assert torch.equal(a[0, 0].long(), torch.from_numpy(np.floor(low.astype(float) * 16 / 255 + 0.5)).long())
    with pytest.raises(ValueError, match="5x5 pixels"):
        conditional.load_condition_png(tmp_path / "big.png", (1, 5, 5), 17)


# ---- baselines and a tiny end-to-end run ---------------------------------------------------------------


def test_l2_cnn_trains_resumes_and_loads(tmp_path):
    data = superres_dataset(load_dataset("digits"), 2)
    model = baselines.RegressionCNN(data.image_shape, data.levels, data.condition_shape, 17, channels=8, blocks=1)
    x, y = data.valid.batch(torch.arange(len(data.valid)))
    with torch.no_grad():
        before = float(model.loss(x, y))
    path = tmp_path / "l2.safetensors"
    first = baselines.fit_regression(model, data, path, max_steps=60, eval_every=30, lr=3e-3)
    assert first["step"] == 60 and first["valid_loss"] < before
    again = baselines.fit_regression(model, data, path, max_steps=80, eval_every=30, lr=3e-3)
    assert again["step"] == 80  # resumed from step 60
    loaded = baselines.load_regression(path)
    pred = loaded.predict(y)
    assert pred.shape == x.shape and 0 <= pred.min() and pred.max() <= 1
    assert baselines.bicubic(y, 2, 17).shape == x.shape


def test_l2_cnn_checkpoints_keep_their_head(tmp_path):
    """A checkpoint written with the sigmoid head (before the linear one; its spec has no "output") resumes
    and loads with that head; another configuration is a clear error, not silently mixed weights."""
    from genzoo.checkpoint import load_tensors, save_tensors

    data = superres_dataset(load_dataset("digits"), 2)
    old = baselines.RegressionCNN(data.image_shape, data.levels, data.condition_shape, 17, 8, 1, output="sigmoid")
    path = tmp_path / "l2.safetensors"
    baselines.fit_regression(old, data, path, max_steps=5, eval_every=5)
    tensors, meta = load_tensors(path)
    del meta["spec"]["output"]
    save_tensors(path, tensors, meta)
    assert baselines.load_regression(path).output == "sigmoid"
    resumed = baselines.RegressionCNN(data.image_shape, data.levels, data.condition_shape, 17, 8, 1)
    baselines.fit_regression(resumed, data, path, max_steps=6, eval_every=5)
    assert resumed.output == "sigmoid"
    y = data.valid.batch(torch.arange(4))[1]
    assert torch.equal(resumed.predict(y), baselines.load_regression(path).predict(y))
    other = baselines.RegressionCNN(data.image_shape, data.levels, data.condition_shape, 17, 4, 1)
    with pytest.raises(ValueError, match="another configuration"):
        baselines.fit_regression(other, data, path, max_steps=7)


def test_tiny_superres_run_through_the_trainer_evaluation_and_picture(tmp_path):
    from genzoo.train import TrainConfig, train

    data = superres_dataset(load_dataset("digits"), 2)
    torch.manual_seed(0)
    model = genzoo.create(
        "pixelcnn",
        data.image_shape,
        data.levels,
        channels=8,
        num_blocks=1,
        condition_channels=4,
        **data.model_options(),
    )
    config = TrainConfig(batch_size=32, max_steps=20, eval_every=20, eval_max_images=64, progress=False, device="cpu")
    result = train(model, data, tmp_path / "run", config)
    assert result["status"] == "finished" and math.isfinite(result["valid"]["nll_nats"])
    model = genzoo.load(tmp_path / "run")
    assert model.condition_shape == (1, 4, 4)
    regression = baselines.RegressionCNN(data.image_shape, 17, (1, 4, 4), 17, channels=4, blocks=0)
    scores = conditional.evaluate_task(model, data, "test", n_images=12, samples=2, regression=regression)
    assert scores["nll"]["n"] == len(data.test) and scores["n_images"] == 12
    assert set(scores["methods"]) == {"truth", "nearest", "bicubic", "l2-cnn", "model"}
    assert scores["methods"]["model"]["diversity"] > 0 and scores["methods"]["truth"]["psnr"] == conditional.PSNR_CAP
    assert "| model |" in conditional.format_table(scores)
    path = conditional.task_figure(
        model, data.test.labels[:3], tmp_path / "grid.png", 2, truth=data.test.images[:3], regression=regression
    )
    with Image.open(path) as picture:
        assert picture.width > picture.height  # 1 + 1 + 1 + 2 + 1 columns, 3 rows


def test_best_of_n_keeps_the_likeliest_candidate_under_the_models_own_log_p():
    data = superres_dataset(load_dataset("digits"), 2)
    torch.manual_seed(0)
    model = genzoo.create("pixelcnn", (1, 8, 8), 17, channels=8, num_blocks=1, **data.model_options()).eval()
    y = data.test.labels[:10].long()
    plain = conditional.draw_samples(model, y, 2, seed=3, batch_size=4)
    assert torch.equal(conditional.draw_samples(model, y, 2, seed=3, batch_size=4, best_of=1), plain)
    best = conditional.draw_samples(model, y, 2, seed=3, batch_size=4, best_of=3)
    assert best.shape == plain.shape
    assert torch.equal(best, conditional.draw_samples(model, y, 2, seed=3, batch_size=4, best_of=3))  # seeded
    with torch.no_grad():
        for k in range(2):  # rebuild the candidates from the documented seeds: the pick is their argmax
            for b, start in enumerate(range(0, 10, 4)):
                part = y[start : start + 4]
                candidates = [
                    model.sample(len(part), part, generator=torch.Generator().manual_seed(
                        3 * 1_000_003 + k * 10_007 + b + j * 100_000_007))
                    for j in range(3)
                ]  # fmt: skip
                assert torch.equal(candidates[0], plain[k, start : start + 4])  # candidate 0: the plain sample
                log_p = torch.stack([model.log_prob(c, part) for c in candidates])
                chosen = torch.stack(candidates)[log_p.argmax(0), torch.arange(len(part))]
                assert torch.equal(best[k, start : start + 4], chosen)
                assert torch.all(model.log_prob(best[k, start : start + 4], part) >= log_p[0])
    with pytest.raises(ValueError, match="best_of"):
        conditional.draw_samples(model, y, 1, best_of=0)
    scores = conditional.evaluate_task(model, data, n_images=6, samples=2, nll=False, best_of=(2,))
    assert {"model", "model best of 2"} <= set(scores["methods"])


def test_colorize_picture_of_an_rgb_model(tmp_path):
    toy = colorize_dataset(synthetic(4, (3, 4, 4), labels=False))
    model = genzoo.create("pixelcnn", (3, 4, 4), 4, channels=12, num_blocks=1, **toy.model_options())
    path = conditional.task_figure(model.eval(), toy.test.labels[:2], tmp_path / "c.png", 2)
    assert path.exists()
    scores = conditional.evaluate_task(model, toy, n_images=4, samples=2, nll=False)
    assert {"gray", "model"} <= set(scores["methods"]) and "colourfulness" in scores["methods"]["model"]


def test_task_names_round_trip_through_load_task_dataset():
    from genzoo.data.pairs import load_task_dataset, parse_task_name

    assert parse_task_name("binarized-mnist-superres4") == ("binarized-mnist", "superres", 4)
    assert parse_task_name("photos32-colorize") == ("photos32", "colorize", None)
    assert parse_task_name("digits") is None
    data = load_task_dataset("digits-superres2")
    assert data.name == "digits-superres2" and data.condition_shape == (1, 4, 4)
    assert conditional.digit_classifier(data) == (None, None)  # a downstream score for MNIST only


def test_sample_figure_from_a_png_and_from_indices(tmp_path):
    data = superres_dataset(load_dataset("digits"), 2)
    model = genzoo.create("pixelcnn", (1, 8, 8), 17, channels=8, num_blocks=1, **data.model_options()).eval()
    Image.fromarray(np.full((4, 4), 200, dtype=np.uint8)).save(tmp_path / "low.png")
    a = conditional.sample_figure(model, tmp_path / "a.png", condition_png=tmp_path / "low.png", samples=2)
    b = conditional.sample_figure(model, tmp_path / "b.png", dataset=data, indices=[0, 5], samples=2)
    with Image.open(a) as one, Image.open(b) as two:
        assert two.height > one.height and two.width > one.width  # two rows; a truth column
    with pytest.raises(ValueError, match="indices"):
        conditional.sample_figure(model, tmp_path / "c.png", dataset=data, indices=[270])


def test_cifar_shaped_data_gives_8x8_conditions_and_gray_conditions():
    """CIFAR-10's files are not in the test data: its shape (3x32x32, 256 levels) stands in."""
    toy = synthetic(256, (3, 32, 32), n=4)
    sr = superres_dataset(toy, 4)
    assert sr.condition_shape == (3, 8, 8) and sr.condition_levels == 256
    assert torch.equal(sr.test.labels, downsample(toy.test.images, 4, 256))
    assert colorize_dataset(toy).condition_shape == (1, 32, 32)
    assert conditional.task_of(sr.image_shape, sr.condition_shape) == ("superres", 4)
