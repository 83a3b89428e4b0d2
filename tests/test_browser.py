"""Real browser: ``streamlit run`` on a loopback port, every page opened in Debian's chromium.

Skips when /usr/bin/chromium is absent, unless ``BEYOND_INET_REQUIRE_BROWSER=1`` (CI), then it
fails. Screenshots go to ``test-artifacts/browser/``.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from dashboard import pages as dashboard_pages
from dashboard import synthetic
from dashboard.pages import url_path
from tests.conftest import REPO

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "test-artifacts" / "browser"
#: page -> the minimum number of Plotly charts it shows on the synthetic store
MIN_CHARTS = {
    "finder": 2,
    "overview": 2,
    "calibration": 4,
    "imagenet_x": 1,
    "invariance": 3,
    "shape_bias": 1,
    "robustness": 3,
    "pug": 2,
    "ood": 3,
    "transfer": 3,
    "representations": 2,
    "compare": 1,
    "own": 4,
    "explorer": 0,
    "reproduction": 1,
    "store_overview": 0,
}
# url path -> (title, minimum number of charts); the live page has its own test
PAGES = {
    url_path(p): (p.title, MIN_CHARTS[p.stem])
    for p in dashboard_pages.PAGES
    if p.stem in MIN_CHARTS
}
CHIPS_VISIBLE = """() => {
  const box = document.querySelector(
    '[data-testid="stSidebar"] [data-testid="stMultiSelectTagsContainer"]').getBoundingClientRect();
  return [...document.querySelectorAll('[data-testid="stSidebar"] [data-tag]')].map(t => {
    const r = t.getBoundingClientRect(); return r.top >= box.top - 1 && r.bottom <= box.bottom + 1;
  });
}"""
#: The page's script run has finished (Streamlit marks its app element while running).
SCRIPT_DONE = (
    "() => document.querySelector('[data-testid=\"stApp\"]')?.dataset"
    ".testScriptState === 'notRunning'"
)
READY_TRIES = 240  # x 0.25 s: streamlit start-up on a busy 2-core machine
TIMEOUT_MS = 60_000


def _require_browser() -> None:
    if CHROMIUM.is_file():
        return
    msg = f"{CHROMIUM} not found (apt-get install chromium)"
    if os.environ.get("BEYOND_INET_REQUIRE_BROWSER") == "1":
        pytest.fail(msg + "; BEYOND_INET_REQUIRE_BROWSER=1 requires it")
    pytest.skip(msg)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_healthy(url: str, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(READY_TRIES):
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.25)  # polling interval, not an assertion
    raise RuntimeError(f"streamlit not healthy at {url} after {READY_TRIES} tries")


@contextlib.contextmanager
def serve(
    store: Path, data_root: Path, log_path: Path, env: dict[str, str] | None = None
) -> Iterator[str]:
    """``streamlit run dashboard/app.py -- --store STORE --data-root ROOT`` on a free
    loopback port (``env``: extra environment variables); yields the base URL."""
    port = _free_port()
    log = open(log_path, "wb")  # noqa: SIM115 (closed below)
    env = {
        **os.environ,
        "BEYOND_INET_STORE": "",
        "BEYOND_INET_DATA_ROOT": "",
        "HF_HUB_OFFLINE": "1",
        "BEYOND_INET_LIVE_MODELS": "timm:test_vit,open_clip:test-tiny-clip",
        **(env or {}),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            "dashboard/app.py",
            "--server.headless",
            "true",
            "--server.address",
            "127.0.0.1",
            "--server.port",
            str(port),
            "--browser.gatherUsageStats",
            "false",
            "--server.fileWatcherType",
            "none",
            "--",
            "--store",
            str(store),
            "--data-root",
            str(data_root),
        ],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        _wait_healthy(f"http://127.0.0.1:{port}/_stcore/health", proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@contextlib.contextmanager
def chromium_browser() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright (one per module: Playwright's sync API does
    not nest)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            yield b
        finally:
            b.close()


def new_tab(browser: Any, url: str, width: int = 1400) -> Any:
    """A new tab of ``browser`` on ``url``."""
    page = browser.new_page(viewport={"width": width, "height": 2400})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url)
    return page


@contextlib.contextmanager
def browser_tab(url: str, width: int = 1400) -> Iterator[Any]:
    """One Chromium tab on ``url`` (for scripts; tests share :func:`chromium`)."""
    with chromium_browser() as b:
        yield new_tab(b, url, width)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    _require_browser()
    with chromium_browser() as b:
        yield b


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    _require_browser()
    d = tmp_path_factory.mktemp("browser")
    store = d / "store.duckdb"
    synthetic.fill_store(
        store,
        scale=0.002,
        models=("deit3_21k", "vit_clip"),
        random_models=("timm:test_vit",),
        data_root=d / "datasets",
        write_images=True,
        n_boot=20,
    )
    synthetic.fill_transfer(store, ("deit3_21k", "vit_clip"))
    synthetic.fill_own(store, ("deit3_21k", "vit_clip"), d / "datasets", 20, write_images=True)
    synthetic.fill_cka(store, [("deit3_21k", "deit3_21k"), ("deit3_21k", "vit_clip")])
    with serve(store, d / "datasets", d / "streamlit.log") as url:
        yield url


@pytest.fixture(scope="module")
def tab(server: str, chromium: Any) -> Iterator[object]:
    """One browser tab on the app; tests move through the pages with the sidebar links
    (client-side navigation, as a user does), so the app's JavaScript loads once."""
    page = new_tab(chromium, f"{server}/?source=both")
    yield page
    page.close()


def _visit(page: Any, title: str, first: bool = False) -> None:
    """Open a page through the sidebar (as a user does) and wait until its script is done."""
    if not first:
        page.locator('[data-testid="stSidebarNav"] a', has_text=title).first.click()
    page.get_by_role("heading", name=title, exact=True).first.wait_for()
    page.wait_for_function(SCRIPT_DONE)


@pytest.mark.parametrize("path", list(PAGES))
def test_every_page_renders_without_errors(tab: Any, path: str) -> None:
    title, charts = PAGES[path]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = tab
    if path:  # the first test looks at the landing page (Overview)
        page.locator('[data-testid="stSidebarNav"] a', has_text=title).first.click()
    page.get_by_role("heading", name=title, exact=True).first.wait_for()
    if charts:
        page.wait_for_function(
            "n => document.querySelectorAll('.js-plotly-plot .main-svg').length >= n", arg=charts
        )
    if path == "explorer":
        page.locator('[data-testid="stImage"] img').first.wait_for()
    page.wait_for_function(SCRIPT_DONE)
    page.screenshot(path=str(ARTIFACTS / f"{path or 'overview'}.png"))
    assert page.locator('[data-testid="stException"]').count() == 0
    assert page.locator('[data-testid="stAlertContentError"]').count() == 0
    sidebar = page.locator('[data-testid="stSidebar"]').inner_text().lower()
    assert "random" in sidebar, "random-weights runs are marked"
    if not path:  # every selected model's chip is visible in the sidebar's box (5 here)
        visible = page.evaluate(CHIPS_VISIBLE)
        assert len(visible) >= 5 and all(visible), visible
    assert "models=" in page.url and "source=both" in page.url


def test_live_inference_upload_shows_predictions(tab: Any, tmp_path: Path) -> None:
    """Upload a picture on the Live inference page and see each model's top-5."""
    page = tab
    page.locator('[data-testid="stSidebarNav"] a', has_text="Live inference").first.click()
    page.get_by_role("heading", name="Live inference", exact=True).first.wait_for()
    page.locator(".st-key-live_random label").first.click()  # random weights are opt-in
    page.locator(".st-key-live_source label", has_text="Upload").first.click()
    picture = tmp_path / "upload.png"
    Image.new("RGB", (320, 240), (200, 80, 40)).save(picture)
    page.locator('.st-key-live_upload input[type="file"]').set_input_files(str(picture))
    page.wait_for_function(
        "() => document.querySelectorAll('[data-testid=\"stDataFrame\"]').length >= 2"
    )
    page.locator('[data-testid="stImage"] img').nth(1).wait_for()
    page.wait_for_function(SCRIPT_DONE)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "live_inference.png"))
    assert page.locator('[data-testid="stException"]').count() == 0
    assert page.locator('[data-testid="stAlertContentError"]').count() == 0
    assert "saw:" in page.locator("main").inner_text()


def test_a_shared_page_url_opens_that_page_with_the_titled_navigation(
    tab: Any, server: str
) -> None:
    """A link to a page (as shared from the URL bar) opens it directly, and the sidebar shows
    the app's page titles, not Streamlit's file-name pages."""
    page = tab
    page.goto(f"{server}/shape_bias?source=published")
    page.get_by_role("heading", name="Shape bias", exact=True).first.wait_for()
    nav = page.locator('[data-testid="stSidebarNav"]').inner_text()
    assert "Overview" in nav and "PUG-ImageNet" in nav
    assert "store_overview" not in nav and "shape_bias" not in nav


@pytest.mark.parametrize("dataset", ["cue-conflict", "imagenet-c", "pug-imagenet"])
def test_every_page_on_a_store_of_one_dataset(
    dataset: str, tmp_path_factory: pytest.TempPathFactory, chromium: Any
) -> None:
    """A newcomer's first store holds one dataset (cue-conflict is the only one that can be
    run here): every page renders, without an exception or an error box."""
    from tests.test_dashboard import single_kind_store

    _require_browser()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    d = tmp_path_factory.mktemp(f"one-{dataset}")
    store = single_kind_store(d, dataset)
    with serve(store, store.parent / "datasets", d / "streamlit.log") as url:
        page = new_tab(chromium, f"{url}/?source=measured")
        for i, (path, (title, _)) in enumerate(PAGES.items()):
            _visit(page, title, first=i == 0)
            if path == "explorer":
                page.locator('[data-testid="stImage"] img').first.wait_for()
            if path in ("explorer", "", "robustness", "shape_bias", "pug"):
                page.screenshot(path=str(ARTIFACTS / f"one-{dataset}-{path or 'overview'}.png"))
            assert page.locator('[data-testid="stException"]').count() == 0, (dataset, path)
            assert page.locator('[data-testid="stAlertContentError"]').count() == 0, path
        page.close()


def _match_count(page: Any) -> int:
    text = page.get_by_text(" models match.").first.inner_text()
    return int(text.split(" of ")[0].replace(",", ""))


def test_model_finder_filter_select_compare(tab: Any, server: str, tmp_path: Path) -> None:
    """The finder renders, a filter narrows the table, a row picked in the table joins the
    sidebar selection (the URL carries it), and the store's measured numbers sit beside the
    published ones (in the table's CSV)."""
    page = tab
    page.goto(f"{server}/?source=both")  # the landing page, whatever an earlier test left
    page.get_by_role("heading", name="Model finder", exact=True).first.wait_for()
    page.wait_for_function(SCRIPT_DONE)
    total = _match_count(page)
    assert total > 1_600
    page.locator(".st-key-mf-text input").fill("deit3_base_patch16_224.fb_in22k")
    page.locator(".st-key-mf-text input").press("Enter")
    page.wait_for_function(
        "n => [...document.querySelectorAll('p')].some(p => "
        "p.textContent.includes(' models match.') && "
        "!p.textContent.startsWith(String(n)))",
        arg=f"{total:,}",
    )
    page.wait_for_function(SCRIPT_DONE)
    assert 0 < _match_count(page) < 5
    grid = page.locator(".st-key-mf-table").first
    grid.scroll_into_view_if_needed()
    box = grid.bounding_box()
    page.mouse.click(box["x"] + 18, box["y"] + 35 + 17)  # the first row's selection box
    page.get_by_text("Shortlist:").first.wait_for()
    page.wait_for_function(SCRIPT_DONE)
    picked = page.locator("p", has_text="Shortlist:").first.locator("code").first.inner_text()
    assert picked.startswith("timm:deit3_base_patch16_224.fb_in22k_ft_in1k")
    with page.expect_download() as download:
        page.locator(".st-key-csv-model-finder button").first.click()
    csv_text = Path(download.value.path()).read_text()
    header = csv_text.splitlines()[0].split(",")
    row = next(
        r.split(",")
        for r in csv_text.splitlines()[1:]
        if r.split(",")[header.index("name")] == "timm:deit3_base_patch16_224.fb_in22k_ft_in1k"
    )
    measured = row[header.index("measured imagenet-val top1")]
    assert measured and float(measured) > 0  # deit3_21k's run, on the catalogue's row
    page.locator(".st-key-mf-compare button").first.click()
    page.wait_for_function("name => decodeURIComponent(location.search).includes(name)", arg=picked)
    chip = page.locator('[data-testid="stSidebar"] [data-tag]', has_text="timm:deit3_base_p")
    chip.first.wait_for()  # the rerun after the click draws the sidebar with the new model
    page.wait_for_function(SCRIPT_DONE)
    page.screenshot(path=str(ARTIFACTS / "finder-shortlist.png"))
    assert page.locator('[data-testid="stException"]').count() == 0


def test_model_finder_box_selection_shortlists_model_names(tab: Any, server: str) -> None:
    """A box drawn over the scatter's points puts those models, by name, on the shortlist
    (it crashed with KeyError: 0, and held row numbers)."""
    page = tab
    page.goto(f"{server}/?source=published")
    page.get_by_role("heading", name="Model finder", exact=True).first.wait_for()
    page.wait_for_function(SCRIPT_DONE)
    page.locator(".st-key-mf-text input").fill("convnext_base fb_in22k_ft_in1k")
    page.locator(".st-key-mf-text input").press("Enter")
    page.wait_for_function(
        "() => [...document.querySelectorAll('p')].some(p => /^\\d+ of /.test(p.textContent) "
        "&& parseInt(p.textContent) < 10)"
    )
    page.wait_for_function(SCRIPT_DONE)
    n = _match_count(page)
    drag = page.locator(".st-key-mf-scatter .nsewdrag").first
    drag.scroll_into_view_if_needed()
    box = drag.bounding_box()
    page.mouse.move(box["x"] + 3, box["y"] + 3)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2, steps=5)
    page.mouse.move(box["x"] + box["width"] - 3, box["y"] + box["height"] - 3, steps=5)
    page.mouse.up()
    page.get_by_text("Shortlist:").first.wait_for()
    page.wait_for_function(SCRIPT_DONE)
    names = page.locator("p", has_text="Shortlist:").first.locator("code").all_inner_texts()
    assert 0 < len(names) <= n, names
    assert all(x.startswith(("timm:", "open_clip:")) and "convnext_base" in x for x in names)
    page.screenshot(path=str(ARTIFACTS / "finder-box-select.png"))
    assert page.locator('[data-testid="stException"]').count() == 0


def test_compare_opens_the_disagreeing_images_in_the_explorer(tab: Any, server: str) -> None:
    """From Compare two models, one click shows the images where A is right and B wrong in
    the Explorer, its filters set (a user's path: the sidebar link, then the button)."""
    page = tab
    page.goto(f"{server}/?source=both")
    page.get_by_role("heading", name="Model finder", exact=True).first.wait_for()
    _visit(page, "Compare two models")
    button = page.locator(".st-key-cmp-open-a button").first
    n = int(button.inner_text().rsplit("(", 1)[1].rstrip(")").replace(",", ""))
    button.click()
    page.get_by_role("heading", name="Explorer", exact=True).first.wait_for()
    page.wait_for_function(SCRIPT_DONE)
    page.get_by_text(f"{n} images match.").first.wait_for()
    page.screenshot(path=str(ARTIFACTS / "compare-to-explorer.png"))
    assert page.locator('[data-testid="stException"]').count() == 0


def test_overview_ranking_shows_coverage_when_catalogue_models_join(tab: Any, server: str) -> None:
    """The issue's case in a browser: catalogue models (timm, imagenet-testbed) join the
    paper's four. The weights stay on (ECE's slider is not reset to 0), each property's
    coverage is written out, and the models missing a weighted property are named as such
    instead of being ranked on ImageNet top-1 alone."""
    page = tab
    extra = "timm:convnext_base.fb_in22k_ft_in1k,imagenet-testbed:resnet50_augmix"
    page.goto(
        f"{server}/overview?source=published&models=deit3_21k,convnext_base_21k,vit_clip,"
        f"convnext_clip,{extra}"
    )
    page.get_by_role("heading", name="Overview", exact=True).first.wait_for()
    page.wait_for_function(SCRIPT_DONE)
    cover = page.locator("p", has_text="Coverage of the models shown:").first
    cover.wait_for()
    text = cover.inner_text()
    assert "ECE: 4 of 6" in text and "Shape bias: 4 of 6" in text, text
    ece = page.locator('input[type="range"][aria-label="ECE"]').first
    assert int(ece.get_attribute("value")) >= 1  # not silently 0
    missing = page.locator("p", has_text="Not ranked").first.inner_text()
    assert "missing: ECE" in missing
    assert "timm:convnext_base.fb_in22k_ft_in1k" in missing
    assert "imagenet-testbed:resnet50_augmix" in missing
    page.screenshot(path=str(ARTIFACTS / "overview-catalogue-coverage.png"), full_page=True)
    assert page.locator('[data-testid="stException"]').count() == 0


def test_own_images_page_switch_method_and_open_the_explorer(tab: Any, server: str) -> None:
    """Your own images: the ranking, per-class, confusion and reliability charts; switching
    the method redraws them; the Explorer button shows the images where A is right and B
    wrong, thumbnails served from the dataset's own folder."""
    page = tab
    page.goto(f"{server}/?source=both")
    page.get_by_role("heading", name="Model finder", exact=True).first.wait_for()
    _visit(page, "Your own images")
    assert page.locator(".js-plotly-plot").count() >= 4
    page.get_by_text("k-nearest neighbours", exact=True).first.click()
    page.wait_for_function(SCRIPT_DONE)
    page.get_by_text("k-nearest neighbours: top-1 with 95% CI").first.wait_for()
    page.screenshot(path=str(ARTIFACTS / "own.png"), full_page=True)
    page.locator(".st-key-own-explore button").first.click()
    page.get_by_role("heading", name="Explorer", exact=True).first.wait_for()
    page.wait_for_function(SCRIPT_DONE)
    page.get_by_text("images match.").first.wait_for()
    assert page.locator('[data-testid="stException"]').count() == 0
    page.locator('[data-testid="stImage"] img').first.wait_for()  # thumbnails from its folder
    page.screenshot(path=str(ARTIFACTS / "own-to-explorer.png"), full_page=True)
