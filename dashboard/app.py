"""beyond-inet dashboard: routes only (``streamlit run dashboard/app.py [-- --store PATH]``).

Every page draws the shared sidebar itself (``dashboard.state.current``).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

import streamlit as st

from beyond_inet.store import read_session

HERE = Path(__file__).resolve().parent
PAGES = [  # (file under sections/, title, icon); the first is the landing page
    ("finder.py", "Model finder", ":material/travel_explore:"),
    ("overview.py", "Overview", ":material/dashboard:"),
    ("calibration.py", "Calibration", ":material/tune:"),
    ("imagenet_x.py", "ImageNet-X", ":material/category:"),
    ("invariance.py", "Invariance", ":material/transform:"),
    ("shape_bias.py", "Shape bias", ":material/pets:"),
    ("robustness.py", "Robustness", ":material/shield:"),
    ("pug.py", "PUG-ImageNet", ":material/view_in_ar:"),
    ("transfer.py", "Transfer", ":material/move_up:"),
    ("representations.py", "Representations", ":material/grid_on:"),
    ("compare.py", "Compare two models", ":material/compare_arrows:"),
    ("explorer.py", "Explorer", ":material/image_search:"),
    ("reproduction.py", "Reproduction", ":material/compare:"),
    ("live_inference.py", "Live inference", ":material/upload:"),  # when that page exists
    ("store_overview.py", "Runs", ":material/storage:"),
]

st.set_page_config(page_title="beyond-inet", page_icon=":material/compare:", layout="wide")
if not st.get_option("server.address"):  # started elsewhere: .streamlit/config.toml unread
    st.error(
        "This dashboard was started outside the repository folder, so Streamlit listens on "
        "every network interface and anyone who reaches the port could read the store and the "
        "images. Nothing is shown. Restart it with `--server.address localhost` (or from the "
        "repository root), or with `--server.address 0.0.0.0` to share it on purpose."
    )
    st.stop()
pages = [
    st.Page(HERE / "sections" / f, title=t, icon=i, default=k == 0)
    for k, (f, t, i) in enumerate(PAGES)
    if (HERE / "sections" / f).is_file()
]
nav = st.navigation(pages, expanded=True)  # every page listed, no "View more"
with read_session():  # one read-only store connection per page run, closed after it
    nav.run()
