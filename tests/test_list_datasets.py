"""``python -m precompute --list-datasets``: every known dataset, found / missing / bad,
image counts, layouts and how to get them; honours --data-root and --dataset-path."""

from __future__ import annotations

from pathlib import Path

import pytest

from beyond_inet.datasets import DATASETS
from beyond_inet.datasets.downloads import dataset_statuses
from beyond_inet.reference import imagenet_wnids
from precompute.cli import main
from tests.conftest import CUE_PAIRS, write_cue_conflict
from tests.test_robustness import write_wnid_folders


@pytest.fixture(scope="module")
def list_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("listing")
    write_cue_conflict(root / "cue-conflict", CUE_PAIRS)
    write_wnid_folders(root / "imagenet-r", [imagenet_wnids()[0]], per_class=1)  # not an R class
    (root / "imagenet-sketch").mkdir()  # present but empty
    return root


def _rows(out: str) -> dict[str, list[str]]:
    lines = out.splitlines()
    end = lines.index("")
    return {line.split()[0]: line.split() for line in lines[1:end]}


def test_list_shows_every_dataset_with_status(
    list_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a_dir = tmp_path / "elsewhere-a"
    write_wnid_folders(a_dir, [imagenet_wnids()[6]], per_class=2)  # 6 = an ImageNet-A class
    assert (
        main(
            [
                "--list-datasets",
                "--data-root",
                str(list_root),
                "--dataset-path",
                f"imagenet-a={a_dir}",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    rows = _rows(out)
    assert set(rows) == set(DATASETS)
    assert rows["cue-conflict"][1:4] == ["found", "6", str(list_root / "cue-conflict")]
    assert rows["imagenet-a"][1:4] == ["found", "2", str(a_dir)]
    assert rows["imagenet-val"][1:3] == ["missing", "0"]
    assert rows["imagenet-r"][1:3] == ["bad", "layout"]
    assert rows["imagenet-sketch"][1:3] == ["bad", "layout"]
    assert "not one of the dataset's ImageNet classes" in out
    for name, spec in DATASETS.items():
        assert f"{name}: {spec.description}" in out and spec.layout.text in out
    assert "Manual download under the ImageNet licence" in out
    assert "--download imagenet-c" in out


def test_statuses_api(list_root: Path) -> None:
    by_name = {s.spec.name: s for s in dataset_statuses(list_root)}
    assert by_name["cue-conflict"].images == 6 and by_name["cue-conflict"].downloadable
    assert not by_name["imagenet-val"].downloadable
    assert not by_name["imagenet-hard"].downloadable
    assert by_name["imagenet-c"].status == "missing"


def test_list_shows_every_transfer_task(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from beyond_inet.datasets.transfer import TASKS
    from tests.test_transfer import write_folder_task

    write_folder_task(tmp_path / "vtab" / "dtd", {"train": 4, "test": 2})
    (tmp_path / "vtab" / "dmlab").mkdir(parents=True)  # there, but no layout
    assert main(["--list-datasets", "--data-root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    table = out.split("task  ")[1].split("\n\n")[0].splitlines()
    rows = {line.split()[0]: line.split() for line in table[1:]}
    assert set(rows) == set(TASKS)
    assert rows["dtd"][1:6] == ["natural", "found", "(folders,", "seeded)", "10/2/6"]
    assert rows["dmlab"][2:4] == ["bad", "layout"]
    assert rows["cifar100"][2] == "missing"
    assert "--download cifar100" in out and "export the TFDS / VTAB splits" in out


def test_download_of_a_task_torchvision_lacks_says_how_to_get_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--download", "resisc45", "--data-root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert (
        err.startswith("error: resisc45 cannot be downloaded automatically")
        and err.count("\n") == 1
    )
