"""The organizer page (admin token only): progress, live ranking, breakdowns, position bias, CSV export.

Before the first ballot it says so (no table, no rank, no chart). After it: the ranking table with the 95%
intervals, a chart of the best-worst scores with the intervals as error bars, downloads of votes.csv and
ranking.csv (the kit's CsvWriter), and per image (chosen in a list) its candidates in ranking order (most picks,
then fewer least picks) with their counts.

Everything is recomputed from the store on each run (and every 15 s by a fragment): never a stale cache.
Every table goes through `_shown`: `st.dataframe` has a "Download as CSV" button that writes cells as they are,
so text cells, column headers and index labels (run names, juror and image ids) are shown through
`evaluator.common.csv_safe.safe_text`, as in every CSV the kit writes (a run `=HYPERLINK(...)` reads `'=HYPERLINK(...)`).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path

import pandas as pd
import streamlit as st

from evaluator.common.csv_safe import safe_text
from jury_app.web.context import JuryContext, guarded_login, jury_context
from jury_app.web.served_image import served_bytes
from jury_app.ranking.attention import check_results
from jury_app.ranking.intervals import INTERVALS, QUESTION
from evaluator.contracts.jury_package import RANKING_NAME, PackageError, load_key
from jury_app.ranking.position_bias import position_bias
from jury_app.ranking.ranking import ImageRunCount
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


NO_VOTES = ("No votes yet. The ranking, its chart, the per-image strips and the downloads appear here after the "
            "first ballot (this page refreshes itself every 15 s).")
NO_JURORS = "No juror links yet: create them with `pp-jury jurors DIR --add N` and send one to each juror."
STRIP_COLUMNS = 7


@st.cache_data(show_spinner=False, max_entries=512)
def _thumb(path: str) -> bytes:
    """A small, metadata-free copy of a candidate for the per-image strip (organizer only)."""
    return served_bytes(Path(path), max_side=256)[0]


def _ranking_chart(table: pd.DataFrame):
    """Best-worst score per run (points, ranking order) with its 95% interval as error bars."""
    import altair as alt

    data = table[["run", "bws", "ci_low", "ci_high", "rank"]].copy()
    order = list(data.sort_values(["rank", "run"])["run"])
    base = alt.Chart(data).encode(y=alt.Y("run:N", sort=order, title=None))
    bars = base.mark_errorbar(thickness=2).encode(x=alt.X("ci_low:Q", title="best-worst score (95% interval)"),
                                                 x2="ci_high:Q")
    points = base.mark_point(filled=True, size=80).encode(x="bws:Q")
    return bars + points


def strip_order(candidates: Iterable[tuple[str | None, Path]], counts: Mapping[str, ImageRunCount],
                ranked: Collection[str]) -> list[tuple[str, Path]]:
    """(run, file) of one image's strip: the candidates whose run is in the ranking, by most picks on this image
    (more first), then least picks (fewer first), then run. A candidate with no run or a run outside the ranking
    (e.g. a planted attention-check image) is skipped: the strip shows ranked runs only."""
    files = {run: file for run, file in candidates if run is not None and run in ranked}
    return sorted(files.items(), key=lambda rf: (-counts[rf[0]].most if rf[0] in counts else 0,
                                                 counts[rf[0]].least if rf[0] in counts else 0, rf[0]))


def _image_strip(ctx: JuryContext, key, result) -> None:
    """One image's candidates in ranking order (most picks, then fewer least, then run), with their counts."""
    package = ctx.package
    image_id = st.selectbox("Image", package.image_ids, key="strip_image",
                            format_func=lambda i: f"{package.image_ids.index(i) + 1}. {safe_text(i)}")
    counts = {c.run: c for c in result.per_image if c.image == image_id}
    ordered = strip_order(((key.candidates[c.id].run if c.id in key.candidates else None, c.file)
                           for c in package.image(image_id).candidates), counts, {s.run for s in result.scores})
    files = dict(ordered)
    order = [run for run, _ in ordered]
    for start in range(0, len(order), STRIP_COLUMNS):
        cols = st.columns(STRIP_COLUMNS)
        for col, run in zip(cols, order[start:start + STRIP_COLUMNS]):
            c = counts.get(run)
            col.image(_thumb(str(files[run])), width="stretch", alt=f"{safe_text(run)} on {safe_text(image_id)}")
            # st.text: plain text, never markdown or HTML (a run name is participant input)
            col.text(f"{start + order[start:].index(run) + 1}. {safe_text(run)}\n"
                     f"most {c.most if c else 0}, least {c.least if c else 0}")


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
    if not jurors:
        st.info(NO_JURORS)
    else:
        progress = pd.DataFrame([{"juror": j.juror, "ballots": j.ballots, "of": n_images,
                                  "final": j.finalized is not None, "last ballot": j.last_update or "",
                                  "revoked (not counted)": j.revoked or ""} for j in jurors])
        st.dataframe(_shown(progress), hide_index=True)
    ballots = store.ballots()
    if key.checks:  # [jury] attention_every > 0: each juror's planted checks (jury_app.ranking.attention)
        st.subheader("Attention checks (failed: the planted check picked as most appealing; never ranked)")
        st.dataframe(_shown(pd.DataFrame([{"juror": r.juror, "checks": r.checks, "failed": r.failed,
                                           "fail share": r.fail_share} for r in check_results(ballots, key)])),
                     hide_index=True)
    st.subheader("Ranking (task rule: most appealing, ties by fewer least appealing)")
    if not ballots:
        st.info(NO_VOTES)
        return
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
        st.altair_chart(_ranking_chart(table), width="stretch", height=max(160, 36 * len(table)),
                        alt="Best-worst score per run, with its 95% interval as an error bar")
    cols = st.columns(3)
    cols[0].metric("Ballots", len(ballots))
    cols[1].metric("Kendall's W", "n/a" if math.isnan(result.agreement.kendall_w)
                   else f"{result.agreement.kendall_w:.3f}")
    cols[2].metric("Split-half reliability", "n/a" if math.isnan(result.agreement.split_half)
                   else f"{result.agreement.split_half:.3f}")
    dl = st.columns(2)
    with dl[0]:
        st.download_button("Download votes.csv", votes_to_csv(store.votes()), file_name="votes.csv",
                           mime="text/csv")
    with dl[1]:
        st.download_button(f"Download {RANKING_NAME}", ranking_csv(result.scores, result.interval),
                           file_name=RANKING_NAME, mime="text/csv")
    st.subheader("Per image: the candidates in ranking order", anchor=False)
    _image_strip(ctx, key, result)
    st.subheader("Per image: most appealing picks", anchor=False)
    per_image = _frame(result.per_image)
    if len(per_image):
        st.dataframe(_shown(per_image.pivot(index="image", columns="run", values="most").fillna(0).astype(int)))
        with st.expander("Least appealing picks per image"):
            st.dataframe(_shown(per_image.pivot(index="image", columns="run", values="least").fillna(0).astype(int)))
    st.subheader("Position bias: share of most appealing picks by grid position", anchor=False)
    st.dataframe(_shown(_frame(position_bias(ballots, store.layouts()))), hide_index=True)


def render() -> None:
    ctx = jury_context()
    _login(ctx)
    st.title("Pixel Privacy jury: organizer", anchor=False)
    if ctx.package.note:
        st.info(ctx.package.note)
    _live(ctx)
