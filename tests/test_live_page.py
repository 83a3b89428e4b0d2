"""The Live inference page (Streamlit AppTest) with tiny random models.

Runs the page file directly (it is also routed by dashboard/app.py's navigation).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from beyond_inet.live import available_view_families, view_grid
from beyond_inet.transforms.perturbations import CORRUPTIONS
from tests.conftest import REPO, TINY_CLIP, TINY_TIMM, noise_image

PAGE = str(REPO / "dashboard" / "sections" / "live_inference.py")
TINY = f"{TINY_TIMM}, {TINY_CLIP}"


def _png(w: int = 96, h: int = 72, seed: int = 0) -> bytes:
    buf = io.BytesIO()
    noise_image(np.random.default_rng(seed), h, w).save(buf, format="PNG")
    return buf.getvalue()


def _ok(at: AppTest) -> AppTest:
    assert not at.exception, at.exception
    return at


def _page(monkeypatch: pytest.MonkeyPatch, data_root: Path | None = None) -> AppTest:
    """The page with the two tiny models on random weights, on the default example photo."""
    monkeypatch.setenv("BEYOND_INET_DATA_ROOT", str(data_root or REPO / "no-such-folder"))
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.run()
    at.multiselect(key="live_models").set_value([])
    at.text_input(key="live_extra_models").set_value(TINY)
    at.checkbox(key="live_random").check()
    return _ok(at.run())


def _model_tables(at: AppTest) -> list:
    return [d for d in at.dataframe if list(d.value.columns) == ["probability", "class"]]


def _predictions_shown(at: AppTest, n_models: int = 2) -> None:
    assert [s.value for s in at.subheader][:n_models] == [TINY_TIMM, TINY_CLIP][:n_models]
    tables = _model_tables(at)
    assert len(tables) >= n_models
    for t in tables[:n_models]:
        assert len(t.value) == 5 and t.value["probability"].is_monotonic_decreasing
    seen = [c for im in at.image for c in im.captions if " saw: " in c]
    assert len(seen) == n_models  # what each model saw
    assert not at.error


def test_without_weights_shows_the_cli_message(monkeypatch: pytest.MonkeyPatch) -> None:
    at = _ok(AppTest.from_file(PAGE, default_timeout=120).run())
    if not at.error:
        pytest.skip("pretrained weights are available on this machine")
    assert any("Pretrained weights for model 'deit3_21k'" in e.value for e in at.error)
    assert any("--random-weights" in e.value for e in at.error)
    assert any("use random weights (meaningless demo)" in i.value for i in at.info)
    assert not at.checkbox(key="live_random").value  # only on request


def test_random_demo_is_labelled(monkeypatch: pytest.MonkeyPatch) -> None:
    at = _page(monkeypatch)
    assert any("RANDOM weights" in w.value and "meaningless" in w.value for w in at.warning)
    _predictions_shown(at)


def test_unknown_model_name_suggests(monkeypatch: pytest.MonkeyPatch) -> None:
    at = _page(monkeypatch)
    at.text_input(key="live_extra_models").set_value(TINY + ", timm:test_vitt")
    at = _ok(at.run())
    assert any("test_vitt" in e.value and "Did you mean" in e.value for e in at.error)
    assert _model_tables(at)  # the models that load still predict


def test_each_example_photo(monkeypatch: pytest.MonkeyPatch) -> None:
    at = _page(monkeypatch)
    box = at.selectbox(key="live_example")
    for name in box.options:
        at.selectbox(key="live_example").set_value(name)
        at = _ok(at.run())
        _predictions_shown(at)
        assert any(name in c.value for c in at.caption)


def test_upload_predicts(monkeypatch: pytest.MonkeyPatch) -> None:
    at = _page(monkeypatch)
    at.radio(key="live_source").set_value("Upload")
    at = _ok(at.run())
    assert any("Upload a JPEG" in i.value for i in at.info)
    at.file_uploader(key="live_upload").set_value(("mine.png", _png(), "image/png"))
    at = _ok(at.run())
    _predictions_shown(at)
    assert any("mine.png: PNG, RGB, 96 x 72" in c.value for c in at.caption)


def _big_noise_png() -> bytes:
    buf = io.BytesIO()
    arr = np.random.default_rng(1).integers(0, 256, (300, 300, 3), dtype=np.uint8)
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()  # ~270 KB of incompressible pixels


@pytest.mark.parametrize("case", ["not an image", "corrupt", "too many pixels", "too large"])
def test_bad_uploads_get_one_line(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    jpeg = io.BytesIO()
    noise_image(np.random.default_rng(2), 200, 200).save(jpeg, format="JPEG")
    data, env, expect = {
        "not an image": (b"just some text\n" * 20, {}, "not a supported image"),
        "corrupt": (jpeg.getvalue()[: len(jpeg.getvalue()) // 3], {}, "corrupt or truncated"),
        "too many pixels": (
            _png(120, 100),
            {"BEYOND_INET_MAX_PIXELS": "10000"},
            "decompression bomb",
        ),
        "too large": (_big_noise_png(), {"BEYOND_INET_MAX_UPLOAD_MB": "0.1"}, "the limit is"),
    }[case]
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    at = _page(monkeypatch)
    at.radio(key="live_source").set_value("Upload")
    at = _ok(at.run())
    at.file_uploader(key="live_upload").set_value(("bad.jpg", data, "image/jpeg"))
    at = _ok(at.run())
    assert len(at.error) == 1
    msg = at.error[0].value
    assert expect in msg and msg.startswith("bad.jpg: ") and "\n" not in msg
    assert not _model_tables(at)


def test_custom_clip_labels(monkeypatch: pytest.MonkeyPatch) -> None:
    at = _page(monkeypatch)
    assert "Zero-shot with your own labels (CLIP models)" in [s.value for s in at.subheader]
    at.text_input(key="live_labels").set_value("cat, dog, rocket")
    at = _ok(at.run())
    ranked = [d.value for d in at.dataframe if set(d.value["class"]) == {"cat", "dog", "rocket"}]
    assert len(ranked) == 1  # one CLIP model selected
    assert ranked[0]["probability"].sum() == pytest.approx(100.0, abs=1e-2)  # in %
    at.radio(key="live_templates").set_value("single")
    at = _ok(at.run())
    assert [d for d in at.dataframe if set(d.value["class"]) == {"cat", "dog", "rocket"}]
    at.text_input(key="live_labels").set_value("cat")
    at = _ok(at.run())
    assert any("at least two" in e.value for e in at.error)


def test_no_clip_model_no_label_box(monkeypatch: pytest.MonkeyPatch) -> None:
    at = _page(monkeypatch)
    at.text_input(key="live_extra_models").set_value(TINY_TIMM)
    at = _ok(at.run())
    assert not [t for t in at.text_input if t.key == "live_labels"]


def _perturbed(at: AppTest, text: str) -> None:
    assert any("perturbed:" in c.value and text in c.value for c in at.caption), [
        c.value for c in at.caption
    ]
    _predictions_shown(at)


def test_rotation_slider(monkeypatch: pytest.MonkeyPatch) -> None:
    at = _page(monkeypatch)
    at.slider(key="live_rotation").set_value(90)
    _perturbed(_ok(at.run()), "rotated 90°")


def test_corruption_and_severity_sliders(monkeypatch: pytest.MonkeyPatch) -> None:
    at = _page(monkeypatch)
    assert at.slider(key="live_severity").disabled
    at.selectbox(key="live_corruption").set_value("gaussian_noise")
    at = _ok(at.run())
    _perturbed(at, "gaussian_noise severity 3")
    at.slider(key="live_severity").set_value(5)
    at = _ok(at.run())
    _perturbed(at, "gaussian_noise severity 5")
    assert set(at.selectbox(key="live_corruption").options) == {"none", *CORRUPTIONS}


@pytest.mark.parametrize("family", ["scale", "shift", "resolution"])
def test_view_sliders(family: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if family not in available_view_families():
        pytest.skip(f"view family {family!r} is not registered in beyond_inet.transforms.views yet")
    at = _page(monkeypatch)
    at.selectbox(key="live_view_family").set_value(family)
    at = _ok(at.run())
    value = view_grid(family)[-1]
    at.select_slider(key=f"live_view_{family}").set_value(value)
    at = _ok(at.run())
    assert any(f"view {family}:{value:g}" in c.value for c in at.caption)
    # each model either predicts or says why it cannot run this view
    shown = len(_model_tables(at)) + sum("cannot run this setting" in w.value for w in at.warning)
    assert shown >= 2


def test_sweep_chart_for_each_parameter(monkeypatch: pytest.MonkeyPatch) -> None:
    at = _page(monkeypatch)
    box = at.selectbox(key="live_sweep")
    assert box.options[0] == "rotation (degrees)"
    assert {f"{c} (severity)" for c in CORRUPTIONS} <= set(box.options)
    assert not at.get("plotly_chart")  # on request only
    at.toggle(key="live_sweep_on").set_value(True)
    for param in ["rotation", *available_view_families(), "contrast"]:
        at.selectbox(key="live_sweep").set_value(param)
        at = _ok(at.run())
        charts = at.get("plotly_chart")
        assert len(charts) == 1


def test_cue_conflict_source(monkeypatch: pytest.MonkeyPatch, data_root: Path) -> None:
    at = _page(monkeypatch, data_root)
    assert "Cue-conflict image" in at.radio(key="live_source").options
    at.radio(key="live_source").set_value("Cue-conflict image")
    at = _ok(at.run())
    assert at.selectbox(key="live_cue").options[0].startswith("bear/")
    _predictions_shown(at)


def test_page_is_routed_by_the_app(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Under dashboard/app.py's navigation the page runs the same (sidebar and all)."""
    monkeypatch.setenv("BEYOND_INET_STORE", str(tmp_path / "absent.duckdb"))
    monkeypatch.setenv("BEYOND_INET_DATA_ROOT", str(tmp_path / "no-data"))
    at = _ok(AppTest.from_file(str(REPO / "dashboard" / "app.py"), default_timeout=120).run())
    at = _ok(at.switch_page("sections/live_inference.py").run())
    assert [t.value for t in at.title] == ["Live inference"]
    at.multiselect(key="live_models").set_value([])
    at.text_input(key="live_extra_models").set_value(TINY)
    at.checkbox(key="live_random").check()
    _predictions_shown(_ok(at.run()))


def test_default_models_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BEYOND_INET_LIVE_MODELS", f"vit_clip, {TINY_TIMM}")
    monkeypatch.setenv("BEYOND_INET_DATA_ROOT", str(REPO / "no-such-folder"))
    at = _ok(AppTest.from_file(PAGE, default_timeout=120).run())
    assert at.multiselect(key="live_models").value == ["vit_clip"]
    assert at.text_input(key="live_extra_models").value == TINY_TIMM


def test_helpers(monkeypatch: pytest.MonkeyPatch) -> None:
    from beyond_inet.live import Playground
    from dashboard import live_helpers as H

    monkeypatch.setenv("BEYOND_INET_DATA_ROOT", "/env/root")
    assert H.data_root(["--store", "s.duckdb", "--data-root", "/cli/root"]) == Path("/cli/root")
    assert H.data_root(["--data-root=/x"]) == Path("/x")
    assert H.data_root([]) == Path("/env/root")
    monkeypatch.delenv("BEYOND_INET_DATA_ROOT")
    assert H.data_root([]) == Path("data/datasets")
    assert H.split_model_names(["a", "b"], " b, c ,, a, d") == ["a", "b", "c", "d"]
    s = Playground(view="scale:1.5", rotation=30, corruption="contrast", severity=2)
    assert H.current_value(s, "rotation") == 30
    assert H.current_value(s, "scale") == 1.5 and H.current_value(s, "shift") is None
    assert H.current_value(s, "contrast") == 2 and H.current_value(s, "pixelate") == 0
    assert H.describe_settings(s) == "view scale:1.5, rotated 30°, contrast severity 2"
    assert H.describe_settings(Playground()) == "none"


def test_long_actions_report_progress_and_match_the_one_shot_results() -> None:
    """Running the models and encoding labels go one step at a time with a progress call
    before each; the step-wise results are the one-shot ones (a label's head column
    depends on that label only)."""
    import torch

    from beyond_inet.live import Playground, label_head, predict
    from beyond_inet.models import LoadOptions, WeightsSource, load_model
    from dashboard import live_helpers as H

    random = LoadOptions(weights=WeightsSource("random"))
    models = [load_model(n, random) for n in (TINY_TIMM, TINY_CLIP)]
    img = torch.from_numpy(np.asarray(noise_image(np.random.default_rng(1), 64, 80))).permute(
        2, 0, 1
    )
    calls: list[tuple[int, int, str]] = []
    got = H.cached_predict(
        "img-1", H.settings_key(Playground()), img, models, Playground(), lambda *a: calls.append(a)
    )
    assert [c[:2] for c in calls] == [(0, 2), (1, 2)]
    want = predict(models, img, Playground())
    assert [[s.index for s in r.topk] for r in got] == [[s.index for s in r.topk] for r in want]
    labels = ["cat", "dog", "rocket"]
    calls.clear()
    head = H.cached_label_head(models[1], labels, "openai-80", lambda *a: calls.append(a))
    assert [c[2] for c in calls] == labels
    torch.testing.assert_close(head, label_head(models[1], labels), atol=1e-5, rtol=0)
