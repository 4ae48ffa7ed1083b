"""genzoo.data: the bundled digits, the real MNIST-family files (skipped when absent), and the parsers'
refusal of corrupt, truncated or malformed files (small fakes with monkeypatched checksum tables)."""

import functools
import gzip
import hashlib
import io
import pickle
import struct
import tarfile

import numpy as np
import pytest
import torch

from genzoo.data import DATASETS, DataError, ImageDataset, amat, cifar, idx, list_datasets, load_dataset
from genzoo.data.base import DynamicallyBinarizedSplit
from genzoo.data.download import RemoteFile


@functools.lru_cache(maxsize=None)
def _load(name: str, root: str) -> ImageDataset:
    """Each real dataset is read once per test session."""
    return load_dataset(name, root, download=False)


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _accepting(remote: RemoteFile, data: bytes) -> RemoteFile:
    """``remote`` with its checksums replaced by the md5 of ``data`` (to test parsers on fakes)."""
    return RemoteFile(remote.name, remote.urls, md5=(_md5(data),), alternatives=remote.alternatives)


def _idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


# ----------------------------------------------------------------------------------------------------
# registry and digits


def test_registry_lists_names_and_rejects_unknown():
    assert list_datasets() == list(DATASETS)
    assert {"digits", "mnist", "fashion-mnist", "binarized-mnist", "dynamic-mnist", "cifar10"} <= set(DATASETS)
    with pytest.raises(ValueError) as err:
        load_dataset("imagenet")
    assert isinstance(err.value, DataError)
    assert all(name in str(err.value) for name in DATASETS)


def test_digits_shapes_levels_and_fixed_split():
    ds = load_dataset("digits")
    assert (ds.levels, ds.num_classes, ds.image_shape) == (17, 10, (1, 8, 8))
    assert [len(ds.split(s)) for s in ("train", "valid", "test")] == [1257, 270, 270]
    for split in (ds.train, ds.valid, ds.test):
        assert split.images.dtype == torch.uint8 and split.labels.dtype == torch.int64
        assert int(split.images.max()) <= 16 and int(split.labels.max()) == 9
    x, y = ds.train.batch(torch.arange(5))
    assert x.dtype == torch.long and x.shape == (5, 1, 8, 8) and y.shape == (5,)
    again = load_dataset("digits")
    assert torch.equal(again.test.images, ds.test.images)  # deterministic split


# ----------------------------------------------------------------------------------------------------
# real files (skipped when ../shared/data is absent)


def _check_mnist_shapes(ds, levels):
    assert ds.image_shape == (1, 28, 28) and ds.levels == levels
    assert [len(ds.train), len(ds.valid), len(ds.test)] == [50_000, 10_000, 10_000]


def test_binarized_mnist_real_files(shared_data):
    ds = _load("binarized-mnist", str(shared_data))
    _check_mnist_shapes(ds, 2)
    assert ds.train.labels is None and ds.num_classes is None
    for split in (ds.train, ds.valid, ds.test):
        assert split.images.dtype == torch.uint8 and int(split.images.max()) == 1
        assert 0.10 < split.images.float().mean() < 0.16


def test_mnist_real_files(shared_data):
    ds = _load("mnist", str(shared_data))
    _check_mnist_shapes(ds, 256)
    assert int(ds.train.images.max()) == 255 and ds.num_classes == 10
    assert ds.train.labels[0] == 5 and ds.test.labels[0] == 7  # the well-known first labels
    assert torch.bincount(ds.valid.labels, minlength=10).min() > 800


def test_dynamic_mnist_real_files(shared_data):
    ds = _load("dynamic-mnist", str(shared_data))
    _check_mnist_shapes(ds, 2)
    assert isinstance(ds.train, DynamicallyBinarizedSplit)
    index = torch.arange(64)
    g = torch.Generator().manual_seed(0)
    first, _ = ds.train.batch(index, g)
    second, _ = ds.train.batch(index, g)
    assert set(first.unique().tolist()) <= {0, 1} and not torch.equal(first, second)
    assert set(ds.test.images.unique().tolist()) == {0, 1}
    # valid/test are a fixed binarization of the 8-bit test images: reproducible, mean near intensity/255
    assert int(ds.train.images.max()) == 255  # train keeps the 8-bit intensities
    assert torch.equal(
        ds.test.images, idx.binarize_once(_load("mnist", str(shared_data)).test.images, idx.DYNAMIC_MNIST_SEEDS["test"])
    )
    assert (
        abs(ds.test.images.float().mean() - _load("mnist", str(shared_data)).test.images.float().mean() / 255) < 0.005
    )


def test_fashion_and_cifar_missing_files_message(tmp_path):
    with pytest.raises(DataError) as err:
        load_dataset("fashion-mnist", tmp_path, download=False)
    for remote in idx.FASHION_FILES.values():
        assert str(tmp_path / "fashion-mnist" / remote.name) in str(err.value)
        assert remote.urls[0] in str(err.value)
    with pytest.raises(DataError) as err:
        load_dataset("cifar10", tmp_path, download=False)
    assert str(tmp_path / "cifar10" / "cifar-10-python.tar.gz") in str(err.value)
    assert cifar.URL in str(err.value)
    assert list(tmp_path.iterdir()) == []  # nothing created


# ----------------------------------------------------------------------------------------------------
# IDX: corrupt, truncated, wrong size


def test_parse_idx_is_strict():
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    data = _idx_bytes(array)
    assert np.array_equal(idx.parse_idx(data), array)
    with pytest.raises(DataError, match="truncated"):
        idx.parse_idx(data[:-1])
    with pytest.raises(DataError, match="trailing"):
        idx.parse_idx(data + b"\0")
    with pytest.raises(DataError, match="magic"):
        idx.parse_idx(b"\x01" + data[1:])
    with pytest.raises(DataError, match="type code"):
        idx.parse_idx(data[:2] + b"\x0d" + data[3:])
    with pytest.raises(DataError, match="header"):
        idx.parse_idx(data[:6])


def _fake_mnist(folder, monkeypatch, n_train=60_000, cut_gzip=False):
    """Write small-but-structurally-right MNIST files and make the checksum table accept them."""
    folder.mkdir(parents=True)
    arrays = {
        "train_images": np.zeros((n_train, 28, 28)),
        "train_labels": np.zeros(n_train),
        "test_images": np.zeros((10_000, 28, 28)),
        "test_labels": np.zeros(10_000),
    }
    table = {}
    for key, array in arrays.items():
        data = gzip.compress(_idx_bytes(array), compresslevel=1)
        if cut_gzip and key == "train_labels":
            data = data[: len(data) // 2]
        remote = idx.MNIST_FILES[key]
        (folder / remote.name).write_bytes(data)
        table[key] = _accepting(remote, data)
    monkeypatch.setattr(idx, "MNIST_FILES", table)


def test_mnist_wrong_size_idx_is_refused(tmp_path, monkeypatch):
    _fake_mnist(tmp_path / "mnist", monkeypatch, n_train=100)
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz: expected an array of shape \(60000"):
        load_dataset("mnist", tmp_path, download=False)


def test_mnist_truncated_gzip_is_refused(tmp_path, monkeypatch):
    _fake_mnist(tmp_path / "mnist", monkeypatch, cut_gzip=True)
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz: damaged or truncated gzip"):
        load_dataset("mnist", tmp_path, download=False)


def test_corrupt_mnist_file_is_reported_and_kept(tmp_path):
    (tmp_path / "mnist").mkdir()
    bad = tmp_path / "mnist" / "train-images-idx3-ubyte.gz"
    bad.write_bytes(b"not mnist")
    with pytest.raises(DataError, match="corrupt") as err:
        load_dataset("mnist", tmp_path, download=True)  # corrupt files are never re-fetched over
    assert str(bad) in str(err.value) and bad.read_bytes() == b"not mnist"


# ----------------------------------------------------------------------------------------------------
# .amat

ROW = " ".join(["0", "1"] * 392) + "\n"


def test_parse_amat_fast_and_tolerant_paths_agree():
    data = (ROW * 3).encode()
    fast = amat.parse_amat(data)
    assert fast.shape == (3, 784) and fast.dtype == np.uint8 and fast[0, :4].tolist() == [0, 1, 0, 1]
    tolerant = amat.parse_amat(data.replace(b"\n", b" \r\n"))
    assert np.array_equal(fast, tolerant)


@pytest.mark.parametrize(
    "bad_row, message",
    [
        (" ".join(["0"] * 783) + "\n", "783 values"),
        (" ".join(["0"] * 783 + ["2"]) + "\n", "'2' is not 0 or 1"),
    ],
)
def test_bad_amat_row_names_file_and_line(tmp_path, monkeypatch, bad_row, message):
    folder = tmp_path / "binarized_mnist"
    folder.mkdir()
    files = {}
    for split in ("train", "valid", "test"):
        text = (ROW + (bad_row if split == "valid" else ROW)).encode()
        path = folder / f"binarized_mnist_{split}.amat"
        path.write_bytes(text)
        files[split] = _accepting(amat.FILES[split], text)
    monkeypatch.setattr(amat, "FILES", files)
    monkeypatch.setattr(amat, "SPLIT_SIZES", {"train": 2, "valid": 2, "test": 2})
    with pytest.raises(DataError, match=f"binarized_mnist_valid.amat, line 2: .*{message}"):
        load_dataset("binarized-mnist", tmp_path, download=False)


# ----------------------------------------------------------------------------------------------------
# CIFAR-10: a restricted unpickler, md5 before unpickling


def _py2_batch(images: np.ndarray, labels) -> bytes:
    """A pickle as Python 2 wrote the CIFAR-10 batches: protocol 2, str data, numpy.core globals."""

    def s(b):
        return b"T" + struct.pack("<i", len(b)) + b  # BINSTRING

    def i(v):
        return b"J" + struct.pack("<i", v)  # BININT

    dtype = (
        b"cnumpy\ndtype\n"
        + s(b"u1")
        + i(0)
        + i(1)
        + b"\x87R"
        + b"("
        + i(3)
        + s(b"|")
        + b"NNN"
        + i(-1)
        + i(-1)
        + i(0)
        + b"tb"
    )
    shape = b"(" + b"".join(i(d) for d in images.shape) + b"t"
    array = (
        b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n("
        + i(0)
        + b"t"
        + s(b"b")
        + b"\x87R"
        + b"("
        + i(1)
        + shape
        + dtype
        + b"\x89"
        + s(images.tobytes())
        + b"tb"
    )
    label_list = b"](" + b"".join(i(v) for v in labels) + b"e"
    return b"\x80\x02}(" + s(b"data") + array + s(b"labels") + label_list + b"u."


def _tar(members: dict) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_cifar_batches_load_through_the_restricted_unpickler(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    members, expected = {}, []
    for name in (*cifar.TRAIN_BATCHES, cifar.TEST_BATCH):
        images = rng.integers(0, 256, (4, 3072), dtype=np.uint8)
        members[name] = _py2_batch(images, [1, 2, 3, 9])
        expected.append(images)
    archive = _tar(members)
    (tmp_path / "cifar10").mkdir()
    (tmp_path / "cifar10" / cifar.ARCHIVE.name).write_bytes(archive)
    monkeypatch.setattr(cifar, "ARCHIVE", _accepting(cifar.ARCHIVE, archive))
    monkeypatch.setattr(cifar, "NUM_TRAIN", 16)
    ds = load_dataset("cifar10", tmp_path, download=False)
    assert (ds.levels, ds.image_shape, len(ds.train), len(ds.valid), len(ds.test)) == (256, (3, 32, 32), 16, 4, 4)
    assert np.array_equal(ds.test.images.numpy().reshape(4, -1), expected[-1])
    assert ds.train.labels.tolist()[:4] == [1, 2, 3, 9] and ds.train.labels.dtype == torch.int64


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_cifar_unpickler_refuses_other_globals():
    with pytest.raises(DataError, match="refusing to load global .*print"):
        cifar.load_batch(pickle.dumps({b"data": _Evil(), b"labels": []}, protocol=2), "evil")


def test_cifar_md5_is_checked_before_unpickling(tmp_path, monkeypatch):
    (tmp_path / "cifar10").mkdir()
    (tmp_path / "cifar10" / cifar.ARCHIVE.name).write_bytes(_tar({"test_batch": b"junk"}))
    monkeypatch.setattr(cifar, "load_batch", lambda *a: pytest.fail("unpickled an unverified archive"))
    with pytest.raises(DataError, match="corrupt"):
        load_dataset("cifar10", tmp_path, download=False)
