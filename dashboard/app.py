"""beyond-inet dashboard: routes only (``streamlit run dashboard/app.py``)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

import streamlit as st

st.set_page_config(page_title="beyond-inet", layout="wide")
pages = [st.Page("pages/store_overview.py", title="Results store", default=True)]
st.navigation(pages).run()
