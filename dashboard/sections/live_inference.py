"""Live inference: upload an image (or pick an example) and compare how each model sees it."""

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:  # run from a checkout, standalone or under st.navigation
    sys.path.insert(0, _ROOT)

import streamlit as st  # noqa: E402

from beyond_inet.live import (  # noqa: E402
    EXAMPLES,
    TEMPLATE_SETS,
    Playground,
    available_view_families,
    image_to_tensor,
    is_clip,
    parse_labels,
    rank_labels,
    sweep_grid,
    view_grid,
    view_name,
)
from beyond_inet.models import PAPER_MODELS  # noqa: E402
from beyond_inet.transforms.perturbations import CORRUPTIONS, PERTURBATIONS  # noqa: E402
from beyond_inet.uploads import EXTENSIONS, UploadError, decode_upload, limits_from_env  # noqa: E402
from dashboard import live_helpers as H  # noqa: E402

st.title("Live inference")
st.caption(
    "Drop in an image and see, side by side, what each model predicts and what it "
    "actually saw after its own preprocessing. Perturb it with the same transforms the "
    "precompute uses and watch the confidence move."
)

# ---- models ------------------------------------------------------------------------------
c1, c2 = st.columns([3, 2])
default_selected, default_extra = H.default_models(PAPER_MODELS)
selected = c1.multiselect("Models", list(PAPER_MODELS), default=default_selected, key="live_models")
extra = c2.text_input(
    "More models (comma-separated)",
    default_extra,
    key="live_extra_models",
    placeholder="timm:resnet50.a1_in1k, open_clip:ViT-B-32:laion2b_s34b_b79k",
)
random_weights = st.checkbox(
    H.RANDOM_LABEL,
    key="live_random",
    help="Random initialisation: the page works, the answers mean "
    "nothing. For trying the page without pretrained weights.",
)
names = H.split_model_names(selected, extra)
models, load_errors = H.load_models(names, random_weights)
for name, msg in load_errors.items():
    st.error(f"{name}: {msg}")
if load_errors and not random_weights:
    st.info(f"Without pretrained weights you can still try the page: tick “{H.RANDOM_LABEL}”.")
if random_weights:
    st.warning("⚠ RANDOM weights: every prediction below is meaningless (a demo of the page).")
if not models:
    st.info("Select at least one model that loads.")
    st.stop()

# ---- image -------------------------------------------------------------------------------
root = H.data_root()
cue = H.cue_conflict_samples(str(root))
sources = ["Upload", "Example photo"] + (["Cue-conflict image"] if cue else [])
source = st.radio(
    "Image",
    sources,
    index=1,
    horizontal=True,
    key="live_source",
    help=None
    if cue
    else f"Cue-conflict images appear here when {root}/"
    "cue-conflict exists (--data-root or BEYOND_INET_DATA_ROOT).",
)
try:
    limits = limits_from_env()
except UploadError as e:
    st.error(str(e))
    st.stop()
if source == "Upload":
    up = st.file_uploader(
        "Upload an image",
        type=list(EXTENSIONS),
        key="live_upload",
        max_upload_size=max(1, int(-(-limits.max_mb // 1))),
    )
    if up is None:
        st.info(
            f"Upload a JPEG, PNG, WebP, BMP or TIFF image (at most {limits.max_mb:g} MB "
            f"and {limits.max_pixels:,} pixels). Nothing is written to disk."
        )
        st.stop()
    data = up.getvalue()
    try:
        decoded = decode_upload(data, up.name, limits)
    except UploadError as e:
        st.error(str(e))
        st.stop()
    img = image_to_tensor(decoded.image)
    image_key = "upload:" + H.digest(data)
    about = f"{up.name}: {decoded.format}, {decoded.mode}, {decoded.size[0]} x {decoded.size[1]}"
elif source == "Example photo":
    example = st.selectbox("Example photo (scikit-image)", list(EXAMPLES), key="live_example")
    img = H.example_tensor(example)
    image_key, about = f"example:{example}", f"scikit-image example: {example}"
else:
    ids = [s.sample_id for s in cue]
    pick = st.selectbox("Cue-conflict image", ids, key="live_cue")
    path = cue[ids.index(pick)].path
    img = H.file_tensor(path)
    image_key, about = f"cue:{path}", f"cue-conflict stimulus {pick}"

# ---- perturbations -----------------------------------------------------------------------
with st.expander("Perturbation playground", expanded=True):
    p1, p2, p3 = st.columns(3)
    families = available_view_families()
    family = p1.selectbox(
        "Invariance view",
        ["standard", *families],
        key="live_view_family",
        help="The precompute's views (beyond_inet.transforms.views): scale, shift, "
        "resolution. 'standard' is the model's own preprocessing.",
    )
    value = None
    if family != "standard":
        value = p1.select_slider(
            H.param_label(family), view_grid(family), key=f"live_view_{family}"
        )
    rotation = p2.slider("Rotation (degrees)", -180, 180, 0, 5, key="live_rotation")
    corruption = p3.selectbox(
        "Corruption (ImageNet-C)",
        ["none", *CORRUPTIONS],
        key="live_corruption",
        help="Hendrycks & Dietterich's corruptions, applied to ImageNet-C's "
        "224 x 224 center crop (resize 256, crop 224).",
    )
    severity = p3.slider("Severity", 1, 5, 3, key="live_severity", disabled=corruption == "none")
settings = Playground(
    view=view_name(family, value if value is not None else 0),
    rotation=float(rotation),
    corruption=None if corruption == "none" else corruption,
    severity=0 if corruption == "none" else int(severity),
)
mkey = H.model_key(models)
with H.progress_bar("Running the models") as progress:
    results = H.cached_predict(image_key, H.settings_key(settings), img, models, settings, progress)
    clean = (
        results
        if settings == Playground()
        else H.cached_predict(
            image_key, H.settings_key(Playground()), img, models, Playground(), progress
        )
    )

st.caption(
    about + ("" if settings == Playground() else f" · perturbed: {H.describe_settings(settings)}")
)

# ---- predictions, side by side -----------------------------------------------------------
cols = st.columns(len(results))
for col, res in zip(cols, results, strict=True):
    with col:
        st.subheader(res.label)
        if res.random_weights:
            st.caption("⚠ random weights")
        if res.error:
            st.warning(f"{res.label} cannot run this setting: {res.error}")
            continue
        st.image(res.seen, caption=H.seen_caption(res), width="stretch")
        H.score_table(res.topk)

# ---- CLIP: your own labels ---------------------------------------------------------------
clip_results = [
    (m, r) for m, r in zip(models, results, strict=True) if is_clip(m) and r.features is not None
]
if clip_results:
    st.subheader("Zero-shot with your own labels (CLIP models)")
    l1, l2 = st.columns([3, 1])
    text = l1.text_input(
        "Your labels, comma-separated",
        key="live_labels",
        placeholder="cat, dog, tabby cat, a drawing of a cat",
    )
    templates = l2.radio(
        "Prompts",
        list(TEMPLATE_SETS),
        key="live_templates",
        format_func=H.template_label,
        help="openai-80 averages 80 prompts per label, as the ImageNet head "
        "does (slower to encode, once per label set); single is fast.",
    )
    if text.strip():
        try:
            labels = parse_labels(text)
        except ValueError as e:
            st.error(str(e))
        else:
            lcols = st.columns(len(clip_results))
            for col, (m, r) in zip(lcols, clip_results, strict=True):
                with H.progress_bar(f"Encoding your labels for {r.label}") as progress:
                    head = H.cached_label_head(m, labels, templates, progress)
                with col:
                    st.markdown(f"**{r.label}**")
                    H.score_table(rank_labels(m, r.features, head, labels))

# ---- sweep chart -------------------------------------------------------------------------
st.subheader("Confidence in the original top-1 as a parameter is swept")
params = ["rotation", *families, *CORRUPTIONS]
s1, s2 = st.columns([3, 1])
param = s1.selectbox(
    "Sweep",
    params,
    key="live_sweep",
    format_func=H.param_label,
    help="Other settings stay as set above; the original top-1 is each "
    "model's top class on the unperturbed image.",
)
grid = sweep_grid(param)
s2.write("")
if not s2.toggle(
    "Run the sweep",
    key="live_sweep_on",
    help=f"Runs every model {len(grid)} times; can take a while on a CPU.",
):
    st.caption(
        f"Turn on “Run the sweep” to chart {H.param_label(param)} over "
        f"{', '.join(f'{v:g}' for v in grid)}."
    )
    st.stop()
targets = tuple((r.model, r.top1.index) for r in clean if r.top1 is not None)
df = H.cached_sweep(
    image_key, mkey, H.settings_key(settings), param, targets, img, models, settings
)
current = H.current_value(settings, param)
st.plotly_chart(H.sweep_figure(df, H.param_label(param), current), key="live_sweep_chart")
st.caption(
    f"Values: {', '.join(f'{v:g}' for v in grid)}"
    + ("." if param in PERTURBATIONS else " (the precompute's grid, beyond_inet.transforms.views).")
)
