"""``python -m precompute --profile``: what a model costs on this machine, stored with its
device and shown by the finder and Compare beside timm's published throughput."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from beyond_inet.run import profile as P
from beyond_inet.run.engine import RunSettings
from beyond_inet.store import Store
from precompute.cli import main
from tests.test_dashboard import _app

NAME = "timm:test_vit.r160_in1k"  # in the catalogue, with timm's published throughput


def test_latency_percentiles_hand_case() -> None:
    # [1, 2, 3, 4] s: p50 = 2.5 s; p95 at rank 0.95 * 3 = 2.85 -> 3 + 0.85 * 1 = 3.85 s
    assert P.latency_percentiles([4.0, 1.0, 3.0, 2.0]) == pytest.approx((2500.0, 3850.0))
    with pytest.raises(ValueError):
        P.latency_percentiles([])


def test_sweep_sizes_best_batch_and_saturation() -> None:
    assert P.batch_sizes(1) == [1]
    assert P.batch_sizes(8) == [1, 2, 4, 8]
    assert P.batch_sizes(48) == [1, 2, 4, 8, 16, 32, 48]
    assert P.best_batch({1: 10.0, 2: 30.0, 4: 30.0, 8: 20.0}) == 2  # the smaller on a tie
    assert not P.saturated([10, 20, 40])
    assert not P.saturated([10, 20, 20.5, 30])  # the last doubling still paid
    assert P.saturated([10, 20, 20.5, 20.9])  # two doublings gained < 5% each
    assert not P.saturated([10, 10.1])  # too few to tell


def test_an_out_of_memory_batch_ends_the_sweep(monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch size that runs out of memory is not a failure: the sweep keeps what it has."""
    from beyond_inet.models import LoadOptions, contract, load_model
    from beyond_inet.models.base import WeightsSource

    real = contract.logits_of

    def small_memory(module, x, *args, **kwargs):  # type: ignore[no-untyped-def]
        if x.shape[0] >= 4:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(module, x, *args, **kwargs)

    monkeypatch.setattr(contract, "logits_of", small_memory)
    model = load_model(NAME, LoadOptions(weights=WeightsSource("random")))
    opts = P.ProfileOptions(max_batch=16, latency_calls=5, min_seconds=0.05)
    lines: list[str] = []
    prof = P.profile_model(model, RunSettings(), opts, lines.append)
    assert sorted(prof.throughput) == [1, 2] and prof.out_of_memory_at == 4
    assert any("out of memory" in m for m in lines)
    assert prof.best_batch in (1, 2)


def test_profile_is_stored_with_its_device_and_shown_by_finder_and_compare(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "s.duckdb"
    args = ["--profile", "--model", NAME, "--random-weights", "--batch-size", "4"]
    assert main([*args, "--store", str(store), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert NAME in out and "752" in out  # timm's published CPU img/s beside ours
    runs = Store(store).query("SELECT * FROM runs")
    assert list(runs["dataset"]) == ["profile"]
    assert runs["device"].iloc[0].startswith("cpu: ") and "threads" in runs["device"].iloc[0]
    assert runs["started_at"].iloc[0] < runs["finished_at"].iloc[0]
    m = Store(store).query("SELECT view, metric, value FROM metrics").set_index(["view", "metric"])
    v = m["value"]
    assert v[("best", "throughput")] >= v[("batch1", "throughput")] > 0
    assert v[("best", "batch_size")] in (1.0, 2.0, 4.0)
    assert v[("batch1", "latency_p95_ms")] >= v[("batch1", "latency_p50_ms")] > 0
    # units: batch-1 throughput is 1 / the median forward time, the p50 latency in ms
    assert v[("batch1", "throughput")] == pytest.approx(1000.0 / v[("batch1", "latency_p50_ms")])
    assert v[("batch1", "peak_memory_mib")] > 10
    assert Store(store).query("SELECT count(*) AS n FROM predictions")["n"].iloc[0] == 0
    # the same settings again: skipped, said; --force measures again (one run kept)
    assert main([*args, "--store", str(store), "--device", "cpu"]) == 0
    assert "already profiled" in capsys.readouterr().out
    assert main([*args, "--store", str(store), "--device", "cpu", "--force"]) == 0
    assert len(Store(store).query("SELECT * FROM runs")) == 1
    v = (
        Store(store)
        .query("SELECT view, metric, value FROM metrics")
        .set_index(["view", "metric"])["value"]
    )  # the new measurement's

    at = _app(monkeypatch, store, "finder")
    at.text_input(key="mf-text").set_value("test_vit.r160").run()
    row = at.dataframe[0].value.set_index("name").loc[NAME]
    assert row["measured cost: measured on"].startswith("cpu: ")
    assert "fp32" in row["measured cost: measured on"]
    assert row["measured cost: img/s, best batch"] == pytest.approx(v[("best", "throughput")])
    assert row["throughput_cpu"] == pytest.approx(752.11)  # timm's, same row
    at.switch_page("sections/compare.py").run()
    assert not at.exception
    cost = next(
        d.value for d in at.dataframe if "timm img/s, CPU (i7-12700H, fp32)" in d.value.columns
    )
    mine = cost.set_index("model").loc[NAME]  # shown with one decimal, missing as —
    shown = float(mine["img/s, batch 1"].replace(",", ""))
    assert shown == pytest.approx(v[("batch1", "throughput")], abs=0.051)
    assert mine["timm img/s, CPU (i7-12700H, fp32)"] == "752.1"
    assert "." not in mine["best batch"]  # a count, shown as one
    assert cost.set_index("model").loc["deit3_21k", "img/s, batch 1"] == "—"  # not profiled


def test_a_testbed_name_or_a_bad_option_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = str(tmp_path / "s.duckdb")
    assert main(["--profile", "--model", "imagenet-testbed:resnet50_augmix", "--store", store]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "published imagenet-testbed result" in err
    assert main(["--profile", "--model", NAME, "--transfer", "dtd", "--store", store]) == 2
    assert "--profile measures models only" in capsys.readouterr().err


def test_two_models_are_stored_and_stay_off_the_evaluation_pages(tmp_path: Path) -> None:
    """Two models in one call (each measured in a fresh interpreter of its own) are both
    stored with their device; a profile never shows up among the evaluation runs and
    metrics the other pages read (Overview, Robustness, the sidebar)."""
    from dashboard import queries

    store = tmp_path / "s.duckdb"
    two = f"{NAME},timm:test_convnext.r160_in1k"
    assert main(["--profile", "--model", two, "--random-weights", "--batch-size", "2",
                 "--store", str(store), "--device", "cpu"]) == 0  # fmt: skip
    s = Store(store)
    mem = s.query(
        "SELECT model, value FROM metrics WHERE metric = 'peak_memory_mib' AND view = 'batch1'"
    ).set_index("model")["value"]
    assert len(mem) == 2 and (mem > 0).all()  # a fresh interpreter with torch and one tiny model
    assert len({s.query("SELECT DISTINCT device FROM runs")["device"].iloc[0]}) == 1
    path, version = str(store), queries.store_version(store)
    assert queries.latest_runs.uncached(path, version).empty
    assert queries.metrics.uncached(path, version).empty
    assert set(queries.profiles.uncached(path, version)["model"]) == {
        NAME,
        "timm:test_convnext.r160_in1k",
    }
