"""Dashboard speed: fill a synthetic store the size of the paper suite, time every page's data.

For each page it times what the page computes before drawing (the same query and frame
functions the page calls): *cold* = with Streamlit's data cache cleared first, *warm* = the
repeat call a page re-run makes. Reports, never asserts; the goal is < 300 ms per page.

    python benchmarks/bench_dashboard.py                 # full size: ~18.8 M prediction rows
    python benchmarks/bench_dashboard.py --scale 0.01    # a quick run
    python benchmarks/bench_dashboard.py --store s.duckdb --keep   # reuse / keep the store
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import streamlit as st

from beyond_inet.store import read_session
from dashboard import frames, published, queries, synthetic
from dashboard.state import Selection
from dashboard.ui import combined_metrics

GOAL_MS = 300.0


def page_functions(sel: Selection) -> dict[str, Callable[[], object]]:
    """Per page, a function doing what that page computes (see dashboard/sections/)."""
    p, v, models = sel.path, sel.version, sel.models
    a, b = models[0], models[1]

    def model_finder() -> object:  # the catalogue read from disk (cold), both charts
        from beyond_inet import catalog
        from dashboard import figures, finder

        for fn in (finder._table, catalog._wide, catalog._read, catalog.model_names):
            fn.cache_clear()
        df = finder.with_measured(
            finder.table(),
            queries.metrics(p, v, finder.MEASURED_DATASETS, False, finder.MEASURED_METRICS),
        )
        df = finder.apply_filters(df, finder.Filters())
        x, y = finder.DEFAULT_X, finder.DEFAULT_Y
        figures.finder_scatter(df, x, y, "logit", finder.pareto(df, x, y), finder.fit_for(x, y))
        figures.finder_scatter(
            df, "throughput_gpu", x, "logit", finder.pareto(df, "throughput_gpu", x)
        )
        return catalog.model_names()

    def overview() -> object:
        num, _ = frames.overview(combined_metrics(sel))
        props = [c for c in num.columns if c in {x.title for x in frames.PROPERTIES}]
        return frames.ranking(num[[*props, "random_weights"]], dict.fromkeys(props, 1.0))

    def calibration() -> object:  # the stored ECE / MCE and the 15 reliability bins
        combined_metrics(sel, None, ("top1", "ece", "mce", "nll", "brier"))
        return queries.calibration_table(p, v, "imagenet-val", "standard", models, 15)

    def calibration_c() -> object:  # the largest dataset, one ImageNet-C view, 30 bins
        queries.calibration_table(p, v, "imagenet-c", "fog:3", models, 30)
        return queries.calibration_errors(p, v, "imagenet-c", "fog:3", models, 30)

    def compare() -> object:  # the stored paired comparison and the images one got right
        queries.stored_paired(p, v, a, b, "imagenet-val", "standard")
        return queries.paired_outcomes(p, v, a, b, "imagenet-val", "standard")

    def imagenet_x() -> object:
        return combined_metrics(sel, ("imagenet-val",))

    def invariance() -> object:
        return frames.family_views(
            combined_metrics(sel, ("imagenet-val",)), frames.INVARIANCE_FAMILIES
        )

    def shape_bias() -> object:
        combined_metrics(sel, ("cue-conflict",))
        published.human_shape_bias()
        return queries.cue_conflict_gallery(p, v, models, 8, 0)

    def robustness() -> object:
        comb = combined_metrics(sel)
        frames.robustness_table(comb)
        return frames.family_views(comb[comb["dataset"] == "imagenet-c"])

    def pug() -> object:
        return combined_metrics(sel, ("pug-imagenet",))

    def explorer_first() -> object:  # what the page shows first: no filter, page 1
        queries.explorer_options(p, v, "imagenet-val")
        return queries.explorer_grid(
            p, v, "imagenet-val", "standard", models, (), False, None, None, 0, 24
        )

    def explorer() -> object:
        queries.explorer_options(p, v, "imagenet-val")
        return queries.explorer_grid(
            p,
            v,
            "imagenet-val",
            "standard",
            models,
            ((a, "correct"), (b, "wrong")),
            True,
            "pose",
            None,
            0,
            24,
        )

    def explorer_c() -> object:  # an ImageNet-C view, no filter, page 3
        return queries.explorer_grid(
            p, v, "imagenet-c", "snow:5", models, (), False, None, None, 2, 24
        )

    def reproduction() -> object:
        return queries.reproduction_table(p, v, "both", models)

    def runs() -> object:
        return queries.all_runs(p, v)

    return {
        "model finder (full catalogue)": model_finder,
        "overview": overview,
        "calibration": calibration,
        "calibration (imagenet-c view, 30 bins)": calibration_c,
        "compare": compare,
        "imagenet-x": imagenet_x,
        "invariance": invariance,
        "shape bias": shape_bias,
        "robustness": robustness,
        "pug-imagenet": pug,
        "explorer (first view)": explorer_first,
        "explorer (filters)": explorer,
        "explorer (imagenet-c, page 3)": explorer_c,
        "reproduction": reproduction,
        "runs": runs,
    }


def _time(fn: Callable[[], object], clear: bool) -> float:
    if clear:
        st.cache_data.clear()
    t = time.perf_counter()
    with read_session():  # as app.py runs every page
        fn()
    return (time.perf_counter() - t) * 1000


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="fraction of the full paper suite (1.0 = ~18.8 M rows; 0.01 = quick)",
    )
    ap.add_argument("--store", type=Path, help="store path (default: a temporary file)")
    ap.add_argument("--keep", action="store_true", help="keep the store afterwards")
    ap.add_argument("--repeat", type=int, default=3, help="timed repetitions per page")
    args = ap.parse_args(argv)
    logging.getLogger("streamlit").setLevel(logging.ERROR)
    tmp = None
    if args.store is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench_dashboard_")
        args.store = Path(tmp.name) / "bench.duckdb"
    if not args.store.exists():
        t = time.perf_counter()
        n = synthetic.fill_store(args.store, args.scale, log=False)
        print(f"filled {args.store}: {n:,} prediction rows in {time.perf_counter() - t:.0f} s")
    path = str(args.store)
    version = queries.store_version(path)
    runs = queries.latest_runs.uncached(path, version)
    n_rows = queries.Store(path).query("SELECT count(*) AS n FROM predictions")["n"].iloc[0]
    print(f"store: {n_rows:,} prediction rows, {len(runs)} runs, {runs['model'].nunique()} models")
    sel = Selection(
        path,
        version,
        tuple(sorted(runs["model"].unique())),
        "both",
        tuple(sorted(runs["model"].unique())),
        runs,
    )
    queries.class_names()  # one-off imports, not page work
    queries.file_names_with_factor("pose")
    print(f"{'page':40s} {'cold ms':>9s} {'warm ms':>9s}")
    worst = 0.0
    for name, fn in page_functions(sel).items():
        cold = statistics.median(_time(fn, True) for _ in range(args.repeat))
        warm = statistics.median(_time(fn, False) for _ in range(args.repeat))
        worst = max(worst, cold)
        flag = "" if cold < GOAL_MS else f"  (> {GOAL_MS:.0f} ms goal)"
        print(f"{name:40s} {cold:9.1f} {warm:9.1f}{flag}")
    print(f"slowest page (cold): {worst:.0f} ms; goal < {GOAL_MS:.0f} ms per page")
    if args.keep or tmp is None:
        print(f"store kept at {args.store}")
    elif tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
