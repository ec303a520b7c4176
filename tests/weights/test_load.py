"""Loading a state dict into a module: reports, strictness, and error messages that name the keys."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from locdistill.weights import LoadReport, WeightsError, load_weights, read_weights


def two_layers(a: int = 4) -> nn.Sequential:
    return nn.Sequential(nn.Linear(3, a), nn.Linear(a, 2))


def test_report_of_a_clean_load_and_the_weights_are_copied(tmp_path: Path) -> None:
    torch.manual_seed(0)
    src = two_layers()
    torch.save({"model": src.state_dict()}, tmp_path / "w.pth")
    dst = two_layers()
    report = load_weights(dst, tmp_path / "w.pth")
    assert report == LoadReport(str(tmp_path / "w.pth"), "locdistill", [], [], [])
    assert all(torch.equal(a, b) for a, b in zip(src.state_dict().values(), dst.state_dict().values()))
    again = load_weights(two_layers(), read_weights(tmp_path / "w.pth"))  # a read file works too
    assert again.format == "locdistill"
    mapping = load_weights(two_layers(), {"model": src.state_dict()})  # and a loaded mapping
    assert mapping.source == "the given state"


def test_missing_unexpected_and_mismatched_keys_are_counted_and_named(tmp_path: Path) -> None:
    torch.save(two_layers().state_dict(), tmp_path / "w.pth")
    bigger = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2), nn.Linear(2, 2))
    with pytest.raises(
        WeightsError, match=r"w\.pth does not fit the model: 2 missing keys: 2\.weight, 2\.bias$"
    ):
        load_weights(bigger, tmp_path / "w.pth")
    report = load_weights(bigger, tmp_path / "w.pth", strict=False)
    assert report.missing == ["2.weight", "2.bias"] and report.unexpected == []
    with pytest.raises(WeightsError, match=r"2 unexpected keys: 1\.weight, 1\.bias"):
        load_weights(nn.Sequential(nn.Linear(3, 4)), tmp_path / "w.pth")
    with pytest.raises(WeightsError) as err:  # shapes raise even when not strict
        load_weights(two_layers(5), tmp_path / "w.pth", strict=False, target="the 5-wide model", hint="see X")
    assert str(err.value) == (
        f"{tmp_path / 'w.pth'} does not fit the 5-wide model: 3 shape mismatches: 0.weight (checkpoint "
        "(4, 3), model (5, 3)), 0.bias (checkpoint (4,), model (5,)), 1.weight (checkpoint (2, 4), model "
        "(2, 5)); see X"
    )


def test_long_key_lists_are_cut_with_the_total(tmp_path: Path) -> None:
    big = nn.Sequential(*[nn.Linear(2, 2) for _ in range(10)])
    torch.save({}, tmp_path / "empty_model.pth")
    torch.save({"model": {"x": torch.zeros(1)}}, tmp_path / "x.pth")
    with pytest.raises(
        WeightsError, match=r"20 missing keys: 0\.weight, .*, 3\.bias, \.\.\. \(20 in total\)"
    ):
        load_weights(big, tmp_path / "x.pth")


def test_failed_load_leaves_the_model_untouched(tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = two_layers()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    state = two_layers(5).state_dict()
    state["0.weight"] = torch.zeros(4, 3)  # this one fits, the rest do not
    torch.save(state, tmp_path / "w.pth")
    with pytest.raises(WeightsError):
        load_weights(model, tmp_path / "w.pth", strict=False)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
