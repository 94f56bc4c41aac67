"""The juror page: private link in, one ballot per image, final submit.

Arrival: `?token=...` is moved into the session state (server side) and removed from the address bar. No
cookie and no page script holds it: a reload or a server restart starts a new Streamlit session, which asks
for the private link again (the ballots are in the store, so the juror resumes where they were). The token
is checked against the store on every run, so a revoked link stops at once; a new session's first token goes
through `guarded_login` (a right token always gets in; wrong ones are counted per client and logged). Progress
is read from the store on every run, so a reload, a new tab (or the private link again) and a server restart
resume at the first image without a ballot. The page shows letters only: no candidate id, file name, image id or run
(widget keys use the image's position, since Streamlit sends them to the browser); the candidates' bytes come
from `screen_images` (decoded pixels as PNGs of one length per image, URLs keyed per juror), sent by
`st.image` unchanged; "Enlarge X" opens one candidate full size in a dialog (`full_image`: the same layout and key,
larger pixels). A title and a one-line instruction top every screen; Streamlit's developer toolbar and menu are
off for everyone (`pp-jury serve` starts Streamlit with `client.toolbarMode = minimal`, and the app sets no menu
item).
"""

from __future__ import annotations

import math

import streamlit as st

from jury_app.votes.ballot import BallotError
from jury_app.web.context import (HINT, JuryContext, full_image, guarded_login, image_bytes, jury_context, log,
                                  screen_images)
from jury_app.votes.store import StoreError
from jury_app.votes.tokens import log_safe

TOKEN_KEY = "juror_token"
JUROR_KEY = "juror_id"  # set once this session's token was accepted
EDIT_KEY = "edit_image"
MESSAGE_KEY = "juror_message"
GRID_COLUMNS = 4
TITLE = "Pixel Privacy jury"
ENLARGE = "Enlarge"  # the button under each candidate: "Enlarge A" opens it full size
NOT_VALID = ("This link is not valid. Please open the private link the organizer sent you, exactly as received, "
             "or ask the organizer for a new one.")


def _login(ctx: JuryContext) -> str:
    """The authenticated juror id, or a login prompt / error and stop.

    The token comes from `?token=` (then removed from the address bar) or the access-code form, and lives in
    this session's state only.
    """
    if "token" in st.query_params:
        st.session_state[TOKEN_KEY] = st.query_params["token"]
        st.session_state.pop(JUROR_KEY, None)
        st.query_params.clear()
    token = st.session_state.get(TOKEN_KEY)
    if token:
        if st.session_state.get(JUROR_KEY):
            juror = ctx.store.authenticate(token)
            if juror is not None:
                return juror
            log.warning("juror %s: token no longer accepted (revoked); session ended",
                        log_safe(st.session_state[JUROR_KEY]))
            wait = 0.0
        else:
            juror, wait = guarded_login(ctx.juror_guard, token, ctx.store.authenticate, "juror")
            if juror is not None:
                st.session_state[JUROR_KEY] = juror
                return juror
        st.session_state.pop(TOKEN_KEY, None)
        st.session_state.pop(JUROR_KEY, None)
        st.error(NOT_VALID if wait <= 0 else
                 f"This link is not valid, and too many wrong links or codes came from your connection: "
                 f"wait {math.ceil(wait)} seconds before trying another code. Your own private link, exactly as "
                 "received, works at any time.")
    st.title("Pixel Privacy jury")
    st.write("Open the private link you received, or paste your access code here. After a reload or a "
             "break, open your link again: your saved ballots are kept.")
    with st.form("login"):
        code = st.text_input("Access code", type="password")
        if st.form_submit_button("Start") and code.strip():
            st.session_state[TOKEN_KEY] = code.strip().split("token=")[-1]
            st.session_state.pop(JUROR_KEY, None)
            st.rerun()
    st.stop()
    raise AssertionError("unreachable")


def _letters(slots, candidates) -> list[str]:
    by_cand = {s.candidate: s.letter for s in slots}
    return sorted(by_cand[c] for c in candidates if c in by_cand)


@st.dialog("Full size", width="large")
def _enlarged(png: bytes, letter: str) -> None:
    """One candidate full size (the same PNG layout and key as in the grid, larger pixels); Esc or x closes."""
    st.subheader(f"Version {letter}", anchor=False)
    st.image(png, width="content", output_format="PNG", alt=f"Version {letter}, full size")


def _ballot_screen(ctx: JuryContext, juror: str, image_id: str, done: set[str]) -> None:
    package, store = ctx.package, ctx.store
    ids = package.image_ids
    index = ids.index(image_id)
    image = package.image(image_id)
    st.subheader(f"Image {index + 1} of {len(ids)}", anchor=False)
    st.info(HINT)
    rule = package.task.for_candidates(len(image.candidates))
    if rule != package.task:
        st.warning(f"This image has only {len(image.candidates)} versions, so you pick {rule.most} most "
                   f"and {rule.least} least appealing (instead of {package.task.most} and {package.task.least}).")
    if package.task.show_original and image.original is not None:
        st.image(image_bytes(str(image.original)), caption="Original, for reference (not a choice)", width=320)
    slots = store.layout(juror, image_id)
    screen = screen_images(ctx, juror, image)
    enlarge = None
    for row_start in range(0, len(slots), GRID_COLUMNS):
        cols = st.columns(GRID_COLUMNS)
        for col, slot in zip(cols, slots[row_start:row_start + GRID_COLUMNS]):
            col.subheader(slot.letter, anchor=False)
            # output_format="PNG": st.image would otherwise re-encode an RGB PNG as JPEG (and so change the bytes)
            col.image(screen[slot.candidate], caption=slot.letter, width="stretch", output_format="PNG",
                      alt=f"Version {slot.letter}")
            if col.button(f"{ENLARGE} {slot.letter}", key=f"enlarge_{index}_{slot.letter}", icon=":material/zoom_in:",
                          help=f"Show version {slot.letter} full size"):
                enlarge = slot
    if enlarge is not None:
        _enlarged(full_image(ctx, juror, image, enlarge.candidate), enlarge.letter)
    letters = [s.letter for s in slots]
    to_candidate = {s.letter: s.candidate for s in slots}
    previous = store.ballot(juror, image_id)
    with st.form(f"ballot_{index}"):
        st.write(rule.explain(asked=package.task))
        most = st.pills(f"Most appealing (exactly {rule.most})", letters, selection_mode="multi",
                        default=_letters(slots, previous.most) if previous else None, key=f"most_{index}")
        least = st.pills(f"Least appealing (exactly {rule.least})", letters, selection_mode="multi",
                         default=_letters(slots, previous.least) if previous else None, key=f"least_{index}",
                         disabled=rule.least == 0)
        submitted = st.form_submit_button("Save and continue", type="primary", key=f"submit_{index}")
    if submitted:
        try:
            store.save_ballot(juror, image_id, [to_candidate[x] for x in most or []],
                              [to_candidate[x] for x in least or []])
        except (BallotError, StoreError) as exc:
            st.error(str(exc))
        else:
            st.session_state.pop(EDIT_KEY, None)
            st.session_state[MESSAGE_KEY] = f"Saved your ballot for image {index + 1}."
            st.rerun()
    nav = st.columns(3)
    if index > 0 and nav[0].button("Previous image"):
        st.session_state[EDIT_KEY] = ids[index - 1]
        st.rerun()
    if len(done) == len(ids) and nav[1].button("Back to the overview"):
        st.session_state.pop(EDIT_KEY, None)
        st.rerun()


def _review_screen(ctx: JuryContext, juror: str) -> None:
    package, store = ctx.package, ctx.store
    st.subheader("All images have a ballot")
    st.write("You can still change any ballot. When you are done, make the final submit: it locks your ballots.")
    for index, image_id in enumerate(package.image_ids):
        ballot = store.ballot(juror, image_id)
        slots = store.layout(juror, image_id)
        cols = st.columns([3, 1])
        if ballot is None:
            summary = "no ballot yet"
        else:
            summary = f"most {', '.join(_letters(slots, ballot.most))}" + (
                f"; least {', '.join(_letters(slots, ballot.least))}" if ballot.least else "")
        cols[0].write(f"Image {index + 1}: {summary}")
        if cols[1].button("Change", key=f"change_{index}"):
            st.session_state[EDIT_KEY] = image_id
            st.rerun()
    with st.form("final"):
        sure = st.checkbox("I am done: lock my ballots (they cannot be changed afterwards)")
        if st.form_submit_button("Final submit", type="primary", key="final_submit"):
            if not sure:
                st.error("Tick the box first to confirm that your ballots are final.")
            else:
                try:
                    store.finalize(juror)
                except (BallotError, StoreError) as exc:
                    st.error(str(exc))
                else:
                    st.rerun()


def render() -> None:
    ctx = jury_context()
    juror = _login(ctx)
    store, ids = ctx.store, ctx.package.image_ids
    if store.is_final(juror):
        if any(st.session_state.get(f"submit_{i}") for i in range(len(ids))):
            st.error("This change was not saved: your ballots are final and locked.")
        st.success("Thank you! Your ballots are final. You can close this page.")
        if (code := store.completion_code(juror)) is not None:  # `pp-jury jurors DIR --add N --completion-prefix P`
            st.info("Your completion code (paste it where the organizer asked you to):")
            st.code(code, language=None)
        return
    done = store.done_images(juror)
    st.title(TITLE, anchor=False)
    rule = ctx.package.task
    st.write(f"For each photo, pick the **{rule.most} most** and **{rule.least} least** appealing versions, then "
             f"save. Select **{ENLARGE}** under a version (or Tab to it and press Enter) to see it full size.")
    st.progress(len(done) / len(ids), text=f"{len(done)} of {len(ids)} images judged")
    if MESSAGE_KEY in st.session_state:
        st.toast(st.session_state.pop(MESSAGE_KEY))
    current = st.session_state.get(EDIT_KEY)
    if current not in ids:
        current = next((i for i in ids if i not in done), None)
    if current is None:
        _review_screen(ctx, juror)
    else:
        _ballot_screen(ctx, juror, current, done)
