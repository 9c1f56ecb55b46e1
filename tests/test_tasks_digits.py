"""Sequential digits: each input is one of scikit-learn's images, read in the chosen order."""

from __future__ import annotations

import pytest
import torch
from sklearn.datasets import load_digits

from seqexp.models.data import TaskData
from seqexp.tasks.base import SPLITS
from seqexp.tasks.digits import DigitsTask

IMAGES, LABELS = load_digits(return_X_y=True)
BY_PIXELS = {tuple(image / 16.0): int(label) for image, label in zip(IMAGES, LABELS, strict=True)}
"""Every image (row-major pixels in [0, 1]) and its label; the 1797 images are all distinct."""


def test_the_first_sklearn_image_a_zero_read_pixel_by_pixel_and_row_by_row() -> None:
    zero = torch.tensor(IMAGES[0] / 16.0, dtype=torch.float32)
    assert LABELS[0] == 0 and zero.reshape(8, 8)[0].tolist() == [0, 0, 5 / 16, 13 / 16, 9 / 16, 1 / 16, 0, 0]
    for seq_len in (64, 8):
        task = DigitsTask(seq_len=seq_len)
        for split in SPLITS:  # image 0 is in one of the three pools
            inputs, targets = task.examples(split, len(task.pool(split)), seed=0)
            found = [i for i, x in enumerate(inputs) if torch.equal(x.flatten(), zero)]
            if found:
                [i] = found
                assert targets[i] == 0
                assert inputs[i].shape == ((64, 1) if seq_len == 64 else (8, 8))
                if seq_len == 8:
                    assert inputs[i][0].tolist() == zero.reshape(8, 8)[0].tolist(), "step 0 is the top row"
                break
        else:
            pytest.fail("image 0 is in no pool")


@pytest.mark.parametrize("seq_len", [64, 8])
def test_random_examples_are_sklearn_images_with_their_labels(seq_len: int) -> None:
    inputs, targets = DigitsTask(seq_len=seq_len).generate(500, seed=4)
    assert inputs.shape == (500, seq_len, 64 // seq_len) and inputs.dtype == torch.float32
    for x, y in zip(inputs, targets.tolist(), strict=True):
        assert BY_PIXELS[tuple(x.flatten().double().tolist())] == y
    assert set(targets.tolist()) == set(range(10))


def test_permuted_applies_one_fixed_seeded_permutation_to_every_image() -> None:
    plain = DigitsTask(seq_len=64).generate(200, seed=2)
    permuted = DigitsTask(seq_len=64, permuted=True).generate(200, seed=2)
    other = DigitsTask(seq_len=64, permuted=True, permutation_seed=1).generate(200, seed=2)
    permutation = DigitsTask(seq_len=64, permuted=True).permutation
    assert sorted(permutation.tolist()) == list(range(64)) and permutation.tolist() != list(range(64))
    assert torch.equal(permuted[1], plain[1])
    assert torch.equal(permuted[0][:, :, 0], plain[0][:, permutation, 0])
    assert not torch.equal(other[0], permuted[0])
    rows = DigitsTask(seq_len=8, permuted=True).generate(200, seed=2)[0]
    assert torch.equal(rows.flatten(1), permuted[0].flatten(1)), "row by row reads the same permuted order"
    val = DigitsTask(seq_len=64, permuted=True).examples("val", 50, seed=3)[0]
    val_plain = DigitsTask(seq_len=64).examples("val", 50, seed=3)[0]
    assert torch.equal(val[:, :, 0], val_plain[:, permutation, 0]), "validation uses the same permutation"


def test_training_validation_and_test_images_never_overlap() -> None:
    task = DigitsTask(seq_len=8, train_size=1000, val_size=400, test_size=300)
    pools = {split: set(task.pool(split).tolist()) for split in SPLITS}
    assert [len(pools[split]) for split in SPLITS] == [1097, 400, 300]
    assert not pools["train"] & pools["val"] and not pools["train"] & pools["test"]
    assert not pools["val"] & pools["test"]
    data = TaskData(task, batch_size=100, batches_per_epoch=1, seed=3)
    data.setup("fit")
    seen = {
        split: {tuple(x.flatten().tolist()) for x in dataset.tensors[0]}
        for split, dataset in (("train", data.train), ("val", data.val), ("test", data.test))
    }
    assert [len(seen[split]) for split in SPLITS] == [1000, 400, 300]
    assert (
        not seen["train"] & seen["val"]
        and not seen["train"] & seen["test"]
        and not seen["val"] & seen["test"]
    )
    assert data.overlap["data/val_overlap"] == data.overlap["data/test_overlap"] == 0.0


def test_the_default_split_is_1197_300_300() -> None:
    task = DigitsTask()
    assert (task.train_size, task.val_size, task.test_size) == (1197, 300, 300)
    assert task.generate(1197, seed=0)[0].shape[0] == 1197
    with pytest.raises(ValueError, match="1198 images asked of the train pool of 1197"):
        task.generate(1198, seed=0)


def test_baseline_is_chance_over_ten_balanced_classes() -> None:
    task = DigitsTask(seq_len=64)
    assert task.spec.baseline == 0.1 and task.spec.output_size == 10 and task.spec.higher_is_better
    assert not task.spec.tokens and task.spec.input_size == 1 and DigitsTask(seq_len=8).spec.input_size == 8
    _, targets = task.generate(1197, seed=0)
    best_constant = torch.bincount(targets).max().item() / len(targets)
    assert best_constant == pytest.approx(0.1, abs=0.01)


@pytest.mark.parametrize(
    ("knobs", "message"),
    [
        ({"seq_len": 16}, r"task.seq_len must be 64 \(pixel by pixel\) or 8 \(row by row\) \(got 16\)"),
        (
            {"train_size": 1200, "val_size": 300},
            r"task.train_size \+ task.val_size \+ task.test_size must be <= 1797, "
            r"the number of images \(got 1200 \+ 300 \+ 300\)",
        ),
        ({"train_size": None}, r"task.train_size must be a positive integer for DigitsTask.*fixed pool"),
        ({"val_size": 0}, r"task.val_size must be >= 1"),
    ],
)
def test_bad_knobs_are_refused_naming_the_key(knobs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DigitsTask(**{"seq_len": 64, **knobs})
