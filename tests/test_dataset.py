"""The paired-data loader: tensors in [-1, 1], the same geometric augmentation on source and target."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from factory.core.errors import FactoryError
from factory.data.dataset import PairedDataset, to_tensor, to_uint8
from tests.conftest import photo
from tests.test_synth import BLUR_CARD, add_card


@pytest.fixture
def blur_data(workspace: Path, factory_cli) -> Path:
    name = add_card(workspace, BLUR_CARD)
    factory_cli("synth", name, "-n", "12", "--size", "32")
    return workspace / "data" / name


def test_items_and_splits(blur_data: Path) -> None:
    train = PairedDataset([blur_data], split="train")
    test = PairedDataset([blur_data], split="test")
    assert len(train) + len(test) == 12 and len(test) > 0
    assert not {r.pair_id for r in train.refs} & {r.pair_id for r in test.refs}
    item = train[0]
    assert item["source"].shape == item["target"].shape == (3, 32, 32)
    assert item["source"].min() >= -1.0 and item["source"].max() <= 1.0
    assert item["instruction"] == "blur the photo softly" and train.concepts[item["concept"]] == "test-blur"


def test_augmentation_is_identical_on_source_and_target(tmp_path: Path, workspace: Path, factory_cli) -> None:
    # a card whose target equals its source: any difference after augmentation means mismatched params
    name = add_card(workspace, BLUR_CARD.replace("name: test-blur", "name: test-same").replace(
        "    - op: gaussian_blur\n", "    - op: brightness\n      amount: 0.0\n"))
    factory_cli("synth", name, "-n", "6", "--size", "32")
    ds = PairedDataset([workspace / "data" / name], split=None, augment=True)
    torch.manual_seed(0)
    changed = 0
    for i in range(len(ds)):
        item = ds[i]
        assert torch.equal(item["source"], item["target"])
        changed += not torch.equal(item["source"], to_tensor(ds._images[i][0]))
    assert changed > 0, "augmentation never changed anything"


def test_subset_by_ids(blur_data: Path) -> None:
    ds = PairedDataset([blur_data], split=None, ids={"test-blur": ["00001", "00003"]})
    assert [r.pair_id for r in ds.refs] == ["00001", "00003"]


def test_missing_data_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FactoryError, match="factory synth"):
        PairedDataset([tmp_path / "nothing"])


def test_tensor_round_trip() -> None:
    img = photo(3, 16, 16)
    assert (to_uint8(to_tensor(img)) == img).all()
