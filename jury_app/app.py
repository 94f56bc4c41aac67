"""Streamlit entry point: `streamlit run jury_app/app.py -- DIR` (what `pp-jury serve DIR` runs).

Two pages: the juror page at `/` (`?token=...`) and the organizer page at `/organizer` (`?admin=...`).
The navigation is hidden so jurors see no link to the organizer page.
"""

import streamlit as st

from jury_app.web import juror_page, organizer_page

st.set_page_config(page_title="Pixel Privacy jury", layout="wide")
page = st.navigation(
    [st.Page(juror_page.render, title="Vote", url_path="vote", default=True),
     st.Page(organizer_page.render, title="Organizer", url_path="organizer")],
    position="hidden",
)
page.run()
