"""Your own images (--own): layouts on generated ImageFolders and CSVs, the stratified
split recomputed by hand, the one-line refusals, k-NN against scikit-learn, the probe
against an independent optimiser, zero-shot against open_clip directly, and precompute end
to end (views per method, paired comparisons, the feature cache)."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from beyond_inet.datasets import DatasetLayoutError
from beyond_inet.datasets.own import OwnSource, SplitRule, load_own, parse_own
from beyond_inet.scoring import knn
from beyond_inet.store import Store
from precompute.cli import main
from tests.conftest import TINY_CLIP, TINY_TIMM
from tests.trained import class_image

CLASSES = ("banded", "dotted", "striped_cloth")


def write_image_folder(root: Path, per_class: dict[str, int], seed: int = 0) -> Path:
    """``root/<class>/*.png``: ``per_class[c]`` pictures of class ``c``."""
    rng = np.random.default_rng(seed)
    for c, (name, n) in enumerate(per_class.items()):
        for k in range(n):
            path = root / name / f"{name}_{k:03d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(class_image(c * 3, rng, 36, 36)).save(path)
    return root


def _hand_split(ids_by_class: dict[str, list[str]], seed: int = 0) -> dict[str, set[str]]:
    """The documented rule, written out: per class, ids sorted, permuted by
    default_rng([seed, crc32(class)]); round(20%) (at least 1) to test, then to val."""
    out: dict[str, set[str]] = {"train": set(), "val": set(), "test": set()}
    for c, ids in ids_by_class.items():
        ids = sorted(ids)
        perm = np.random.default_rng([seed, zlib.crc32(c.encode())]).permutation(len(ids))
        shuffled = [ids[i] for i in perm]
        n_test = max(1, round(0.2 * len(ids)))
        n_val = max(1, round(0.2 * len(ids)))
        out["test"] |= set(shuffled[:n_test])
        out["val"] |= set(shuffled[n_test : n_test + n_val])
        out["train"] |= set(shuffled[n_test + n_val :])
    return out


def _ids(od, split: str) -> set[str]:  # type: ignore[no-untyped-def]
    return {s.sample_id for s in od.splits[split].samples}


# --------------------------------------------------------------------------- layouts


def test_an_image_folder_gets_a_seeded_stratified_split(tmp_path: Path) -> None:
    counts = {"banded": 10, "dotted": 7, "striped_cloth": 5}
    root = write_image_folder(tmp_path / "pics", counts)
    od = load_own(OwnSource("mine", root))
    assert od.layout == "folders" and od.split_rule == "stratified"
    assert od.classes == CLASSES and od.names == ("banded", "dotted", "striped cloth")
    by_class = {c: [f"{c}/{f.name}" for f in (root / c).iterdir()] for c in counts}
    want = _hand_split(by_class)
    for split in ("train", "val", "test"):
        assert _ids(od, split) == want[split], split
        labels = {s.label for s in od.splits[split].samples}
        assert labels == {0, 1, 2}  # every class in every split
    assert od.sizes() == {"train": 6 + 5 + 3, "val": 2 + 1 + 1, "test": 2 + 1 + 1}
    # the same for every model and every call; another class leaves the others' split
    assert load_own(OwnSource("mine", root)).splits == od.splits
    write_image_folder(root, {"zebra": 4}, seed=3)
    again = load_own(OwnSource("mine", root))
    for split in ("train", "val", "test"):
        assert {i for i in _ids(again, split) if not i.startswith("zebra/")} == _ids(od, split)
    assert load_own(OwnSource("mine", root), SplitRule(seed=1)).splits != again.splits


def test_a_csv_with_and_without_splits_and_a_names_file(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "pics", {"banded": 6, "dotted": 6})
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png"))
    table = root / "labels.csv"
    with table.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "split"])
        for i, f in enumerate(files):
            w.writerow([f, f.split("/")[0], ("train", "train", "test")[i % 3]])
    (root / "classnames.csv").write_text("class,name\nbanded,a banded texture\n")
    od = load_own(OwnSource("csv", table))
    assert od.layout == "csv" and od.split_rule == "given (val drawn from train)"
    assert od.names == ("a banded texture", "dotted")
    test = {f for i, f in enumerate(files) if i % 3 == 2}
    assert _ids(od, "test") == test
    assert _ids(od, "train") | _ids(od, "val") == set(files) - test
    assert {s.label for s in od.splits["val"].samples} == {0, 1}
    # without the split column: the folder's stratified split
    with table.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label"])
        w.writerows([f, f.split("/")[0]] for f in files)
    flat = load_own(OwnSource("csv", table))
    assert flat.split_rule == "stratified"
    assert _ids(flat, "test") == _ids(load_own(OwnSource("dir", root)), "test")


def test_split_folders_keep_their_test_split(tmp_path: Path) -> None:
    write_image_folder(tmp_path / "d" / "train", {"banded": 5, "dotted": 5})
    write_image_folder(tmp_path / "d" / "test", {"banded": 2, "dotted": 2}, seed=1)
    od = load_own(OwnSource("s", tmp_path / "d"))
    assert od.layout == "split folders" and od.sizes()["test"] == 4
    assert all(s.sample_id.startswith("test/") for s in od.splits["test"].samples)
    assert od.sizes()["val"] == 2 and od.sizes()["train"] == 8  # val: 25% of train per class


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("one class", "1 class (banded)"),
        ("empty class", "class 'dotted' has no images"),
        ("too few", "class 'dotted' has 2 image(s)"),
        ("unreadable", "1 unreadable image in"),
        ("test only", "class 'zebra' is in test but not in train"),
        ("bad csv split", "split 'holdout' is none of train, val, test"),
        ("missing", "is neither an image folder"),
        ("loose images", "holds images but no class sub-folders"),
    ],
)
def test_bad_layouts_are_one_line_errors_that_name_the_problem(
    tmp_path: Path, case: str, message: str
) -> None:
    root = tmp_path / "d"
    path = root
    if case == "one class":
        write_image_folder(root, {"banded": 5})
    elif case == "empty class":
        write_image_folder(root, {"banded": 5})
        (root / "dotted").mkdir()
    elif case == "too few":
        write_image_folder(root, {"banded": 5, "dotted": 2})
    elif case == "unreadable":
        write_image_folder(root, {"banded": 5, "dotted": 5})
        (root / "dotted" / "broken.jpg").write_bytes(b"not a jpeg")
    elif case == "test only":
        write_image_folder(root / "train", {"banded": 3, "dotted": 3})
        write_image_folder(root / "test", {"banded": 1, "zebra": 1})
    elif case == "bad csv split":
        write_image_folder(root, {"banded": 3, "dotted": 3})
        path = root / "l.csv"
        path.write_text("path,label,split\nbanded/banded_000.png,banded,holdout\n")
    elif case == "missing":
        path = tmp_path / "nowhere"
    elif case == "loose images":
        write_image_folder(tmp_path, {"d": 3})  # the images of one class, given as PATH
    with pytest.raises(DatasetLayoutError) as e:
        load_own(OwnSource("x", path))
    assert message in str(e.value) and "\n" not in str(e.value)
    if case == "unreadable":
        assert "dotted/broken.jpg" in str(e.value)
    # the CLI says it in one line and exits 2
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["--model", TINY_TIMM, "--random-weights", "--own", f"x={path}"])
    assert code == 2 and err.getvalue().count("\n") == 1 and message in err.getvalue()


def test_the_own_flag_is_checked_at_the_edge(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_own("cats=/data/cats") == OwnSource("cats", Path("/data/cats"))
    for bad in ("cats", "=/x", "c a t s=/x"):
        with pytest.raises(ValueError, match="--own"):
            parse_own(bad)
    with pytest.raises(SystemExit) as e:
        main(["--model", TINY_TIMM, "--own", "no-path"])
    assert e.value.code == 2 and "NAME=PATH" in capsys.readouterr().err
    assert main(["--model", TINY_TIMM, "--own", "a=/x", "--transfer", "dtd"]) == 2
    assert main(["--model", TINY_TIMM, "--own", "a=/x", "--dataset", "imagenet-val"]) == 2
    assert "drop --dataset" in capsys.readouterr().err


# --------------------------------------------------------------------------- k-NN


@pytest.mark.parametrize("seed", [0, 1])
def test_knn_matches_scikit_learn(seed: int) -> None:
    from sklearn.neighbors import KNeighborsClassifier

    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(4, 16))
    y = rng.integers(0, 4, 160)
    x = centers[y] * 0.4 + rng.normal(size=(160, 16))
    xt, yt, xv, yv, xs = x[:100], y[:100], x[100:130], y[100:130], x[130:]
    got = knn.fit_knn((xt, yt), (xv, yv), xs, 4)
    unit = knn.l2_normalise

    def sk(k: int, fx: np.ndarray, fy: np.ndarray) -> KNeighborsClassifier:
        return KNeighborsClassifier(n_neighbors=k).fit(unit(fx), fy)

    val = {k: float(np.mean(sk(k, xt, yt).predict(unit(xv)) == yv)) for k in knn.K_GRID}
    best = min(k for k, v in val.items() if v == max(val.values()))
    assert got.val_top1 == pytest.approx(val) and got.k == best
    xa, ya = np.r_[xt, xv], np.r_[yt, yv]
    np.testing.assert_allclose(got.probs, sk(best, xa, ya).predict_proba(unit(xs)))
    np.testing.assert_array_equal(got.probs.argmax(1), sk(best, xa, ya).predict(unit(xs)))
    np.testing.assert_allclose(got.val_probs, sk(best, xt, yt).predict_proba(unit(xv)))
    logits = knn.vote_logits(got.probs, got.k)
    assert np.isfinite(logits).all()
    np.testing.assert_array_equal(logits.argmax(1), got.probs.argmax(1))


# --------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def own_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """Two tiny models on a generated ImageFolder, by precompute (features cached)."""
    d = tmp_path_factory.mktemp("own")
    root = write_image_folder(d / "pics", {c: 8 for c in CLASSES})
    log = _precompute(d, root)
    return d, root, log


def _precompute(d: Path, root: Path, *extra: str) -> str:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(
            [
                "--model",
                f"{TINY_TIMM},{TINY_CLIP}",
                "--random-weights",
                "--own",
                f"pics={root}",
                "--store",
                str(d / "s.duckdb"),
                "--cache-dir",
                str(d / "cache"),
                "--workers",
                "0",
                "--quiet",
                "--bootstrap",
                "50",
                *extra,
            ]
        )
    assert code == 0, err.getvalue()
    return err.getvalue()


def test_precompute_stores_each_method_per_image_with_paired_statistics(
    own_run: tuple[Path, Path, str],
) -> None:
    d, root, log = own_run
    store = Store(d / "s.duckdb")
    runs = store.query("SELECT model, dataset, views, settings FROM runs ORDER BY model")
    assert set(runs["dataset"]) == {"own-pics"}
    views = dict(zip(runs["model"], runs["views"].map(json.loads), strict=True))
    assert views == {TINY_CLIP: ["probe", "knn", "zero-shot"], TINY_TIMM: ["probe", "knn"]}
    od = load_own(OwnSource("pics", root))
    test_ids = sorted(_ids(od, "test"))
    preds = store.query("SELECT model, view, sample_id, label, pred, correct FROM predictions")
    for (model, view), g in preds.groupby(["model", "view"]):
        assert sorted(g["sample_id"]) == test_ids, (model, view)
        assert g["pred"].between(0, 2).all()
    mets = store.query("SELECT model, view, metric, value, ci_low, ci_high FROM metrics")
    got = mets.set_index(["model", "view", "metric"])
    for model, vs in views.items():
        for view in vs:
            g = preds[(preds["model"] == model) & (preds["view"] == view)]
            assert got.loc[(model, view, "top1"), "value"] == pytest.approx(g["correct"].mean())
            per_class = g.assign(hit=g["pred"] == g["label"]).groupby("label")["hit"].mean()
            assert got.loc[(model, view, "mean_per_class"), "value"] == pytest.approx(
                per_class.mean()
            )
            assert (model, view, "ece") in got.index
            assert np.isfinite(got.loc[(model, view, "top1"), "ci_low"])
    settings = json.loads(runs["settings"].iloc[0])["own"]
    assert settings["split"]["rule"] == "stratified" and settings["split"]["sizes"] == od.sizes()
    assert settings["methods"]["knn"]["chosen_k"] in knn.K_GRID
    paired = store.query("SELECT model_a, model_b, view, n_images FROM paired")
    assert sorted(paired["view"]) == ["knn", "probe"]  # zero-shot: one model only
    assert (paired["n_images"] == len(test_ids)).all()
    assert "3 classes, train/val/test 12/6/6" in log


def test_the_probe_equals_an_independent_optimiser_on_the_cached_features(
    own_run: tuple[Path, Path, str],
) -> None:
    from tests.test_transfer import _oracle_probe

    d, root, _ = own_run
    store = Store(d / "s.duckdb")
    od = load_own(OwnSource("pics", root))
    feats = _cached_features(d, od, TINY_TIMM)
    chosen, probs = _oracle_probe(feats["train"], feats["val"], feats["test"][0], 3)
    run = store.query("SELECT settings FROM runs WHERE model = ?", [TINY_TIMM])
    assert json.loads(run["settings"].iloc[0])["own"]["methods"]["probe"][
        "chosen_c"
    ] == pytest.approx(chosen, rel=1e-9)
    got = store.query(
        "SELECT sample_id, pred FROM predictions WHERE model = ? AND view = 'probe' "
        "ORDER BY sample_id",
        [TINY_TIMM],
    )
    ids = [s.sample_id for s in od.splits["test"].samples]
    want = dict(zip(ids, probs.argmax(1), strict=True))
    assert got["pred"].tolist() == [want[i] for i in got["sample_id"]]


def _cached_features(d: Path, od, model: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:  # type: ignore[no-untyped-def]
    """The cached features of ``model`` per split (matched by the split's labels and the
    model's embedding width), L2-normalised."""
    from beyond_inet.models import LoadOptions, WeightsSource, load_model
    from beyond_inet.run.engine import RunSettings
    from beyond_inet.run.features import split_features

    m = load_model(model, LoadOptions(weights=WeightsSource("random")))
    out = {}
    for split in ("train", "val", "test"):
        f = split_features(od.splits[split], m, RunSettings(workers=0, progress=False),
                           d / "cache", lambda _m: None)  # fmt: skip
        assert f.cached  # precompute extracted them: read back, not recomputed
        out[split] = (f.values / np.linalg.norm(f.values, axis=1, keepdims=True), f.labels)
    return out


def test_zero_shot_equals_open_clip_directly(own_run: tuple[Path, Path, str]) -> None:
    import open_clip
    import torch

    from beyond_inet.models import LoadOptions, WeightsSource, load_model
    from beyond_inet.reference import openai_templates

    d, root, _ = own_run
    od = load_own(OwnSource("pics", root))
    image = _cached_features(d, od, TINY_CLIP)["test"][0]
    m = load_model(TINY_CLIP, LoadOptions(weights=WeightsSource("random")))
    clip = m.module.clip
    tokenizer = open_clip.get_tokenizer(m.module.tokenizer_name)
    with torch.no_grad():
        heads = []
        for name in od.names:  # open_clip's recipe, written out: mean of unit embeddings
            t = clip.encode_text(tokenizer([tpl.format(name) for tpl in openai_templates()]))
            t = torch.nn.functional.normalize(t.float(), dim=-1).mean(0)
            heads.append(torch.nn.functional.normalize(t, dim=0))
        head = torch.stack(heads, 1).double().numpy()
    logits = m.module.logit_scale * image @ head
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    got = Store(d / "s.duckdb").query(
        "SELECT sample_id, pred, confidence FROM predictions WHERE view = 'zero-shot' "
        "ORDER BY sample_id"
    )
    ids = [s.sample_id for s in od.splits["test"].samples]
    order = [ids.index(i) for i in got["sample_id"]]
    np.testing.assert_array_equal(got["pred"], probs.argmax(1)[order])
    np.testing.assert_allclose(got["confidence"], probs.max(1)[order], rtol=1e-4)
    settings = (
        Store(d / "s.duckdb")
        .query("SELECT settings FROM runs WHERE model = ?", [TINY_CLIP])["settings"]
        .iloc[0]
    )
    zs = json.loads(settings)["own"]["methods"]["zero-shot"]
    assert zs["class_names"] == list(od.names) and zs["templates"] == "openai-80"


def test_a_rerun_skips_and_a_forced_one_reads_the_feature_cache(
    own_run: tuple[Path, Path, str],
) -> None:
    d, root, _ = own_run
    assert "skip timm:test_vit on own-pics" in _precompute(d, root)
    _precompute(d, root, "--force")
    runs = Store(d / "s.duckdb").query(
        "SELECT settings FROM runs QUALIFY row_number() OVER (PARTITION BY model "
        "ORDER BY finished_at DESC) = 1"
    )
    assert all(json.loads(s)["own"]["features_cached"] for s in runs["settings"])


def test_list_datasets_shows_an_own_dataset(
    own_run: tuple[Path, Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, root, _ = own_run
    bad = write_image_folder(tmp_path / "one", {"banded": 4})
    code = main(["--list-datasets", "--own", f"pics={root}", "--own", f"one={bad}"])
    out = capsys.readouterr().out
    assert code == 0
    line = next(x for x in out.splitlines() if x.startswith("pics "))
    assert "found (folders, stratified)" in line and " 3 " in line and "12/6/6" in line
    assert "pics: classes banded, dotted, striped_cloth" in out
    assert "one: problem: one: 1 class (banded)" in out


# --------------------------------------------------------------------------- dashboard


def test_the_own_page_ranks_the_stored_runs_and_hands_off_to_the_explorer(
    own_run: tuple[Path, Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from streamlit.testing.v1 import AppTest

    from dashboard import frames, queries

    d, root, _ = own_run
    path = str(d / "s.duckdb")
    version = queries.store_version(path)
    mets = queries.metrics.uncached(path, version, ("own-pics",))
    paired = queries.paired_among.uncached(path, version, "own-pics", (TINY_TIMM, TINY_CLIP))
    ranking = frames.own_ranking(mets, paired, "probe")
    stored = Store(path).query(
        "SELECT model, value FROM metrics WHERE view = 'probe' AND metric = 'top1'"
    )
    assert dict(zip(ranking["model"], ranking["top1"], strict=True)) == dict(
        zip(stored["model"], stored["value"], strict=True)
    )
    assert ranking["mark"].iloc[0] == "best"
    p = Store(path).query("SELECT p_value FROM paired WHERE view = 'probe'")["p_value"].iloc[0]
    assert ranking["p_vs_best"].iloc[1] == pytest.approx(p)  # one other model: Holm = p

    monkeypatch.setenv("BEYOND_INET_STORE", path)
    monkeypatch.setenv("BEYOND_INET_DATA_ROOT", str(root))
    at = AppTest.from_file(
        str(Path(__file__).parents[1] / "dashboard" / "app.py"), default_timeout=90
    )
    at.run()
    at.switch_page("sections/own.py")
    at.run()
    assert not at.exception and [t.value for t in at.title] == ["Your own images"]
    assert len(at.get("plotly_chart")) == 4 and len(at.dataframe) == 1
    assert not at.info  # the images are inside the data root: no hint needed
    at.radio(key="own-method").set_value("knn").run()
    at.selectbox(key="own-confusion-model").set_value(TINY_CLIP).run()
    assert not at.exception and len(at.get("plotly_chart")) == 4
    at.selectbox(key="own-a").set_value(TINY_CLIP).run()
    at.button(key="own-explore").click().run()
    assert not at.exception and [t.value for t in at.title] == ["Explorer"]
    assert at.selectbox(key="ex-dataset").value == "own-pics"
    assert at.selectbox(key="ex-view").value == "knn"
    assert at.selectbox(key=f"ex-o-{TINY_CLIP}").value == "correct"
    assert at.selectbox(key=f"ex-o-{TINY_TIMM}").value == "wrong"
    labels = at.selectbox(key="ex-class").options
    assert any("banded" in str(o) for o in labels)  # the dataset's own class names


def test_ranking_marks_and_confusion_by_hand() -> None:
    import pandas as pd

    from dashboard import frames

    rows = []
    for model, top1 in (("a", 0.9), ("b", 0.8), ("c", 0.5)):
        rows += [
            (model, "probe", "top1", top1, top1 - 0.05, top1 + 0.05),
            (model, "probe", "mean_per_class", top1 - 0.01, math.nan, math.nan),
            (model, "probe", "ece", 0.1, math.nan, math.nan),
        ]
    mets = pd.DataFrame(rows, columns=["model", "view", "metric", "value", "ci_low", "ci_high"])
    paired = pd.DataFrame(
        [("b", "a", "probe", 0.04), ("a", "c", "probe", 0.001), ("a", "b", "knn", 0.9)],
        columns=["model_a", "model_b", "view", "p_value"],
    )
    r = frames.own_ranking(mets, paired, "probe").set_index("model")
    assert list(r.index) == ["a", "b", "c"]
    # Holm over (0.04, 0.001): 0.001 * 2 = 0.002, then max(0.002, 0.04 * 1) = 0.04
    assert r.loc["b", "p_holm"] == pytest.approx(0.04) and r.loc["c", "p_holm"] == 0.002
    assert r["mark"].tolist() == ["best", "worse", "worse"]
    assert frames.own_ranking(mets, paired, "probe", alpha=0.01)["mark"].tolist() == [
        "best",
        "≈",
        "worse",
    ]
    preds = pd.DataFrame({"label": [0, 0, 1, 2, 2, 2], "pred": [0, 1, 1, 2, 0, 2]})
    cm = frames.confusion_matrix(preds, ("x", "y", "z"))
    assert cm.to_numpy().tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    pc = frames.per_class_accuracy(
        preds.assign(model="m", correct=preds["label"] == preds["pred"]), ("x", "y", "z")
    )
    assert pc["accuracy"].tolist() == [0.5, 1.0, pytest.approx(2 / 3)]
    assert pc["class"].tolist() == ["x", "y", "z"] and pc["n"].tolist() == [2, 1, 3]


# --------------------------------------------------------------------------- edge cases


def test_csv_paths_absolute_outside_repeated_and_with_a_bom(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    imgs = write_image_folder(tmp_path / "imgs", {"banded": 4, "dotted": 4})
    files = sorted(imgs.rglob("*.png"))
    (tmp_path / "meta").mkdir()
    table = tmp_path / "meta" / "l.csv"
    lines = ["path,label"]
    for i, f in enumerate(files):  # absolute, and relative climbing out of the CSV's folder
        given = str(f) if i % 2 else f"../imgs/{f.relative_to(imgs).as_posix()}"
        lines.append(f"{given},{f.parent.name}")
    table.write_text("\ufeff" + "\n".join(lines) + "\n", encoding="utf-8")  # Excel's BOM
    monkeypatch.chdir(tmp_path)
    od = load_own(OwnSource("m", Path("meta/l.csv")))  # a relative CSV path
    assert od.sizes() == {"train": 4, "val": 2, "test": 2}
    ids = {s.sample_id for split in od.splits.values() for s in split.samples}
    assert ids == {f.as_posix() for f in files}  # outside the CSV's folder: absolute ids
    assert all(s.path.is_file() for split in od.splits.values() for s in split.samples)
    table.write_text("path,label\n" + f"{files[0]},banded\n" * 2)
    with pytest.raises(DatasetLayoutError, match="is listed again"):
        load_own(OwnSource("m", table))


def test_relabelling_changes_the_identity_and_a_limit_spreads_over_classes(
    tmp_path: Path,
) -> None:
    root = write_image_folder(tmp_path / "p", {"banded": 9, "dotted": 9, "striped": 9})
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png"))
    table = root / "l.csv"

    def write(swap: bool) -> str:
        rows = [(f, f.split("/")[0]) for f in files]
        if swap:
            rows[0], rows[9] = (rows[0][0], rows[9][1]), (rows[9][0], rows[0][1])
        table.write_text("path,label\n" + "".join(f"{p},{c}\n" for p, c in rows))
        return load_own(OwnSource("c", table)).fingerprint()

    assert write(False) != write(True)
    limited = load_own(OwnSource("d", root), limit=3)
    assert sorted(s.label for s in limited.splits["test"].samples) == [0, 1, 2]


def test_half_split_folders_and_a_short_names_row_are_one_line_errors(tmp_path: Path) -> None:
    write_image_folder(tmp_path / "a" / "train", {"banded": 3, "dotted": 3})
    write_image_folder(tmp_path / "a" / "val", {"banded": 1, "dotted": 1})
    with pytest.raises(DatasetLayoutError, match="has train/ but no test/"):
        load_own(OwnSource("a", tmp_path / "a"))
    root = write_image_folder(tmp_path / "b", {"banded": 3, "dotted": 3})
    (root / "classnames.csv").write_text("class,name\nbanded\ndotted,spots\n")
    assert load_own(OwnSource("b", root)).names == ("banded", "spots")


def test_one_shot_zero_shot_and_pairs_across_invocations(tmp_path: Path) -> None:
    """One train image per class (no val to draw): every method still runs; a model added
    by a later precompute is paired with the stored one."""
    write_image_folder(tmp_path / "d" / "train", {c: 1 for c in CLASSES})
    write_image_folder(tmp_path / "d" / "test", {c: 2 for c in CLASSES}, seed=1)
    store = tmp_path / "s.duckdb"
    for model in (TINY_TIMM, TINY_CLIP):
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = main(
                ["--model", model, "--random-weights", "--own", f"one={tmp_path / 'd'}",
                 "--store", str(store), "--cache-dir", str(tmp_path / "cache"),
                 "--workers", "0", "--quiet", "--bootstrap", "0"]
            )  # fmt: skip
        assert code == 0, err.getvalue()
    s = Store(store)
    views = s.query("SELECT DISTINCT view FROM predictions WHERE model = ?", [TINY_CLIP])
    assert set(views["view"]) == {"probe", "knn", "zero-shot"}
    paired = s.query("SELECT view, n_images FROM paired")
    assert sorted(paired["view"]) == ["knn", "probe"] and (paired["n_images"] == 6).all()


def test_the_page_leaves_out_runs_on_an_earlier_version() -> None:
    import pandas as pd

    from dashboard import frames

    runs = pd.DataFrame(
        {
            "model": ["a", "b", "c"],
            "content": ["v1", "v2", "v2"],
            "finished_at": pd.to_datetime(["2026-01-01", "2026-01-03", "2026-01-02"]),
        }
    )
    current, stale = frames.own_current(runs)
    assert list(current["model"]) == ["b", "c"] and stale == ["a"]


def test_every_page_renders_on_a_store_of_own_runs_only(
    own_run: tuple[Path, Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store that holds only --own runs: every page renders (no exception, no error box);
    the ImageNet pages say what is missing."""
    from streamlit.testing.v1 import AppTest

    from dashboard import pages

    d, root, _ = own_run
    monkeypatch.setenv("BEYOND_INET_STORE", str(d / "s.duckdb"))
    monkeypatch.setenv("BEYOND_INET_DATA_ROOT", str(root))
    at = AppTest.from_file(
        str(Path(__file__).parents[1] / "dashboard" / "app.py"), default_timeout=90
    )
    at.query_params["source"] = "measured"
    at.run()
    for page in pages.PAGES:
        if page.stem == "live_inference":
            continue
        at.switch_page(f"sections/{page.file}")
        at.run()
        assert not at.exception, (page.stem, [e.value for e in at.exception])
        assert not at.error, (page.stem, [e.value for e in at.error])
        assert [t.value for t in at.title] == [page.title]
