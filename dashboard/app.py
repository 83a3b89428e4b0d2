"""beyond-inet dashboard: routes only (``streamlit run dashboard/app.py [-- --store PATH]``).

Every page draws the shared sidebar itself (``dashboard.state.current``).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

import streamlit as st

from beyond_inet.store import read_session
from dashboard.pages import PAGES

HERE = Path(__file__).resolve().parent

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
    st.Page(HERE / "sections" / p.file, title=p.title, icon=p.icon, default=k == 0)
    for k, p in enumerate(PAGES)
]
nav = st.navigation(pages, expanded=True)  # every page listed, no "View more"
with read_session():  # one read-only store connection per page run, closed after it
    nav.run()
