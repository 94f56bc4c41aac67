"""The organizer page (admin token only): progress, live ranking, breakdowns, position bias, CSV export.

Everything is recomputed from the store on each run (and every 15 s by a fragment): never a stale cache.
Every table goes through `_shown`: `st.dataframe` has a "Download as CSV" button that writes cells as they are,
so text cells, column headers and index labels (run names, juror and image ids) are shown through
`evaluator.common.csv_safe.safe_text`, as in every CSV the kit writes (a run `=HYPERLINK(...)` reads `'=HYPERLINK(...)`).
"""

from __future__ import annotations

import math

import pandas as pd
import streamlit as st

from evaluator.common.csv_safe import safe_text
from jury_app.web.context import JuryContext, guarded_login, jury_context
from jury_app.ranking.attention import check_results
from jury_app.ranking.intervals import INTERVALS, QUESTION
from evaluator.contracts.jury_package import RANKING_NAME, PackageError, load_key
from jury_app.ranking.position_bias import position_bias
from jury_app.ranking.summary import rank_jury, ranking_csv
from jury_app.votes.votes_csv import votes_to_csv

ADMIN_KEY = "admin_token"
ADMIN_OK_KEY = "admin_accepted"


def _login(ctx: JuryContext) -> None:
    if "admin" in st.query_params:
        st.session_state[ADMIN_KEY] = st.query_params["admin"]
        st.query_params.clear()
    token = st.session_state.get(ADMIN_KEY)
    if token and st.session_state.get(ADMIN_OK_KEY) == token and ctx.store.verify_admin(token):
        return  # accepted before in this session; re-checked every run (a new admin link ends it)
    if token:
        admin, wait = guarded_login(ctx.organizer_guard, token,
                                    lambda t: "admin" if ctx.store.verify_admin(t) else None, "organizer")
        if admin is not None:
            st.session_state[ADMIN_OK_KEY] = token
            return
        st.session_state.pop(ADMIN_KEY, None)
        st.error("This organizer link is not valid; create a new one with `pp-jury admin DIR`." if wait <= 0
                 else f"This organizer token is not valid, and too many wrong tokens came from your connection: "
                 f"wait {math.ceil(wait)} seconds before trying another one (a right token works at any time).")
    st.title("Organizer")
    with st.form("admin_login"):
        code = st.text_input("Organizer token", type="password")
        if st.form_submit_button("Open") and code.strip():
            st.session_state[ADMIN_KEY] = code.strip().split("admin=")[-1]
            st.rerun()
    st.stop()


def _frame(rows) -> pd.DataFrame:
    return pd.DataFrame([r.__dict__ for r in rows])


def _safe(value):
    return safe_text(value) if isinstance(value, str) else value


def _shown(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with every text cell, column header and index label through `safe_text` (see the docstring)."""
    out = frame.rename(columns=_safe, index=_safe)
    for column in out.columns:
        if not pd.api.types.is_numeric_dtype(out[column]) and not pd.api.types.is_bool_dtype(out[column]):
            out[column] = out[column].map(_safe)
    return out


@st.fragment(run_every=15)
def _live(ctx: JuryContext) -> None:
    package, store = ctx.package, ctx.store
    try:
        key = load_key(package.root, package)
    except PackageError as exc:
        st.error(str(exc))
        return
    n_images = len(package.images)
    jurors = store.jurors()
    st.subheader("Progress")
    progress = pd.DataFrame([{"juror": j.juror, "ballots": j.ballots, "of": n_images, "final": j.finalized is not None,
                              "last ballot": j.last_update or "", "revoked (not counted)": j.revoked or ""}
                             for j in jurors])
    st.dataframe(_shown(progress), hide_index=True)
    ballots = store.ballots()
    if key.checks:  # [jury] attention_every > 0: each juror's planted checks (jury_app.ranking.attention)
        st.subheader("Attention checks (failed: the planted check picked as most appealing; never ranked)")
        st.dataframe(_shown(pd.DataFrame([{"juror": r.juror, "checks": r.checks, "failed": r.failed,
                                           "fail share": r.fail_share} for r in check_results(ballots, key)])),
                     hide_index=True)
    st.subheader("Ranking (task rule: most appealing, ties by fewer least appealing)")
    interval = st.radio("What the 95% interval of bws (ci_low, ci_high) answers", INTERVALS,
                        format_func=lambda k: f"{QUESTION[k]} [{k}]", key="interval")
    result = rank_jury(ballots, key, interval=interval)
    if (warning := result.agreement.warning()) is not None:
        st.warning(warning)
    table = _frame(result.scores)
    table["interval"] = result.interval  # which interval gave ci_low / ci_high, as in ranking.csv
    table["bradley_terry"] = [result.bradley_terry.get(r, math.nan) for r in table["run"]]
    table = _shown(table)
    st.dataframe(table, hide_index=True)
    if len(table):
        st.bar_chart(table.set_index("run")[["most", "least"]], stack=False)
    cols = st.columns(3)
    cols[0].metric("Ballots", len(ballots))
    cols[1].metric("Kendall's W", "n/a" if math.isnan(result.agreement.kendall_w)
                   else f"{result.agreement.kendall_w:.3f}")
    cols[2].metric("Split-half reliability", "n/a" if math.isnan(result.agreement.split_half)
                   else f"{result.agreement.split_half:.3f}")
    st.subheader("Per image: most appealing picks")
    per_image = _frame(result.per_image)
    if len(per_image):
        st.dataframe(_shown(per_image.pivot(index="image", columns="run", values="most").fillna(0).astype(int)))
        with st.expander("Least appealing picks per image"):
            st.dataframe(_shown(per_image.pivot(index="image", columns="run", values="least").fillna(0).astype(int)))
    st.subheader("Position bias: share of most appealing picks by grid position")
    st.dataframe(_shown(_frame(position_bias(ballots, store.layouts()))), hide_index=True)
    st.download_button("Download votes.csv", votes_to_csv(store.votes()), file_name="votes.csv",
                       mime="text/csv")
    st.download_button(f"Download {RANKING_NAME}", ranking_csv(result.scores, result.interval), file_name=RANKING_NAME,
                       mime="text/csv")


def render() -> None:
    ctx = jury_context()
    _login(ctx)
    st.title("Pixel Privacy jury: organizer")
    if ctx.package.note:
        st.info(ctx.package.note)
    _live(ctx)
