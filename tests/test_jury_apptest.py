"""Page logic through Streamlit's AppTest: the juror flow, bad input on the page, the organizer page."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from jury_app.web.context import ENV_DIR, HINT
from jury_app.testing.fixtures import make_demo_package
from evaluator.contracts.jury_package import load_package
from jury_app.votes.store import VoteStore

APP = str(Path(__file__).resolve().parents[1] / "jury_app" / "app.py")
RUNS = [f"TEAMSECRET_run{i}" for i in range(1, 6)]
TIMEOUT = 60


def make_store(tmp_path, monkeypatch, runs=RUNS, images=3, **kw) -> VoteStore:
    root = make_demo_package(tmp_path / "jury", runs, images, size=16, **kw)
    monkeypatch.setenv(ENV_DIR, str(root))
    return VoteStore(load_package(root))


def juror_app(token: str | None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    if token is not None:
        at.query_params["token"] = token
    return at.run()


def texts(at: AppTest) -> str:
    parts = [e.value for kind in ("markdown", "info", "error", "warning", "success", "subheader", "title", "caption")
             for e in getattr(at, kind)]
    return "\n".join(str(p) for p in parts)


def submit(at: AppTest, most: list[str], least: list[str]) -> AppTest:
    at.pills[0].set_value(most)
    at.pills[1].set_value(least)
    next(b for b in at.button if b.label == "Save and continue").click()
    return at.run()


def page_image(at: AppTest) -> str:
    return next(s.value for s in at.subheader if s.value.startswith("Image "))


def test_juror_votes_resumes_and_finalizes(tmp_path, monkeypatch):
    store = make_store(tmp_path, monkeypatch)
    link = store.add_jurors(1)[0]
    at = juror_app(link.token)
    assert not at.exception
    assert "token" not in at.query_params  # moved out of the address bar
    assert at.session_state["juror_token"] == link.token
    assert HINT in texts(at) and page_image(at) == "Image 1 of 3"
    letters = at.pills[0].options
    assert len(letters) == 5 and letters == sorted(letters) and len(at.pills[1].options) == 5
    assert "TEAMSECRET" not in texts(at) + "".join(letters)
    at = submit(at, letters[:3], letters[3:])
    assert not at.error and page_image(at) == "Image 2 of 3"
    assert store.done_images(link.juror) == {"img00"}
    slots = {s.letter: s.candidate for s in store.layout(link.juror, "img00")}
    assert store.ballot(link.juror, "img00").most == tuple(sorted(slots[x] for x in letters[:3]))

    at2 = juror_app(link.token)  # a new tab / reload with the private link: resumes from the database
    assert page_image(at2) == "Image 2 of 3"
    for _ in range(2):
        opts = at2.pills[0].options
        at2 = submit(at2, opts[1:4], [opts[0], opts[4]])
    assert "All images have a ballot" in texts(at2)
    next(b for b in at2.button if b.label == "Final submit").click()
    at2.run()
    assert "Tick the box" in texts(at2) and not store.is_final(link.juror)
    at2.checkbox[0].check()
    next(b for b in at2.button if b.label == "Final submit").click()
    at2.run()
    assert store.is_final(link.juror) and "final" in texts(at2)
    assert store.count_ballots() == 3


@pytest.mark.parametrize("kind", ["wrong", "tampered", "admin"])
def test_bad_token_is_refused(tmp_path, monkeypatch, kind):
    store = make_store(tmp_path, monkeypatch)
    token = store.add_jurors(1)[0].token
    bad = {"wrong": "juror001.NotTheRightSecretAtAll0000000", "tampered": token[:-2] + "zz",
           "admin": store.new_admin_token()}[kind]
    at = juror_app(bad)
    assert "not valid" in texts(at)
    assert not at.pills and "juror_token" not in at.session_state
    assert store.count_ballots() == 0 and store.layouts() == []


@pytest.mark.parametrize("most, least, message", [
    (slice(0, 2), slice(3, 5), "exactly 3 are needed"),
    (slice(0, 4), slice(4, 5), "exactly 3 are needed"),
    (slice(0, 3), slice(2, 4), "in both lists"),
    (slice(0, 3), slice(0, 0), "exactly 2 are needed"),
])
def test_wrong_picks_on_the_page_store_nothing(tmp_path, monkeypatch, most, least, message):
    store = make_store(tmp_path, monkeypatch)
    link = store.add_jurors(1)[0]
    at = juror_app(link.token)
    opts = at.pills[0].options
    at = submit(at, opts[most], opts[least])
    assert message in texts(at) and "Please fix your picks" in texts(at)
    assert page_image(at) == "Image 1 of 3" and store.count_ballots() == 0


def test_replayed_form_after_final_submit_is_rejected(tmp_path, monkeypatch):
    store = make_store(tmp_path, monkeypatch, images=2)
    link = store.add_jurors(1)[0]
    for image in store.package.image_ids:
        c = store.package.candidate_ids(image)
        store.save_ballot(link.juror, image, c[:3], c[3:5])
    at = juror_app(link.token)
    next(b for b in at.button if b.label == "Change" and b.key == "change_0").click()
    at.run()
    assert page_image(at) == "Image 1 of 2"
    before = store.ballot(link.juror, "img00")
    store.finalize(link.juror)  # e.g. from another tab
    opts = at.pills[0].options
    at = submit(at, opts[2:5], opts[:2])
    assert "not saved" in texts(at) and "final" in texts(at)
    assert store.ballot(link.juror, "img00") == before


def test_few_candidates_shrink_the_picks_and_say_so(tmp_path, monkeypatch):
    store = make_store(tmp_path, monkeypatch, runs=RUNS[:3], images=1)
    at = juror_app(store.add_jurors(1)[0].token)
    assert "only 3 versions" in texts(at)
    assert at.pills[0].label == "Most appealing (exactly 2)" and at.pills[1].label == "Least appealing (exactly 1)"
    opts = at.pills[0].options
    at = submit(at, opts[:2], opts[2:])
    assert not at.error and store.count_ballots() == 1


def test_original_only_when_the_task_says_so(tmp_path, monkeypatch):
    store = make_store(tmp_path, monkeypatch, images=1, show_original=True)
    at = juror_app(store.add_jurors(1)[0].token)
    captions = [c for im in at.image for c in im.captions]
    assert captions[0].startswith("Original") and len(at.image) == 6
    store2 = make_store(tmp_path / "b", monkeypatch, images=1)
    at = juror_app(store2.add_jurors(1)[0].token)
    captions = [c for im in at.image for c in im.captions]
    assert len(at.image) == 5 and not any("Original" in c for c in captions)
    assert sorted(captions) == sorted(at.pills[0].options)  # grid captions are the letters only


def organizer_app(token: str | None) -> AppTest:
    at = AppTest.from_string("from jury_app.web import organizer_page\norganizer_page.render()",
                             default_timeout=TIMEOUT)
    if token is not None:
        at.query_params["admin"] = token
    return at.run()


def test_organizer_page_needs_admin_token_and_shows_live_ranking(tmp_path, monkeypatch):
    store = make_store(tmp_path, monkeypatch)
    admin = store.new_admin_token()
    juror = store.add_jurors(1)[0]
    for bad in (juror.token, admin[:-1] + "x", None):
        at = organizer_app(bad)
        assert not at.dataframe and "Progress" not in texts(at)
    at = organizer_app(admin)
    assert not at.exception and "admin" not in at.query_params
    # no ballot yet: said so, and no ranking table (no rank 1 for every run), no chart, no download
    assert not [d for d in at.dataframe if "bws" in d.value.columns]
    assert any("No votes yet" in i.value for i in at.info) and not at.get("download_button")
    # a ballot arrives; the next run of the page shows it (no stale cache)
    c = store.package.candidate_ids("img00")
    store.save_ballot(juror.juror, "img00", c[:3], c[3:5])
    at.run()
    ranking = next(d.value for d in at.dataframe if "bws" in d.value.columns)
    assert sorted(ranking["run"]) == RUNS and ranking["most"].sum() == 3 and ranking["least"].sum() == 2
    assert not any("No votes yet" in i.value for i in at.info)
    assert "fewer than 5 jurors" in texts(at)
    for section in ("Progress", "Per image", "Position bias"):
        assert section in texts(at)
    assert {"Download votes.csv", "Download ranking.csv"} <= {b.label for b in at.get("download_button")}


def test_page_sends_blind_pngs_keyed_per_juror_and_no_image_id(tmp_path, monkeypatch):
    """Item 3 of issue 10 on the page: the grid sends `blind_screen`'s bytes exactly (st.image re-encodes nothing:
    the media ids are the hashes of these PNGs), one length per screen, per-juror URLs that are not a content
    hash a participant can compute, and no widget key carries an image id."""
    from PIL import Image
    from streamlit.runtime.memory_media_file_storage import _calculate_file_id

    from jury_app.web.served_image import blind_screen, candidate_pixels, served_bytes, stored_png

    store = make_store(tmp_path, monkeypatch, images=["flower-01", "flower-02"], leak_run_in_metadata=True)
    a, b = store.add_jurors(2)
    ids = {}
    for link in (a, b):
        at = juror_app(link.token)
        urls = [u for im in at.image for u in im.value]
        assert len(urls) == 5 and all(u.endswith(".png") for u in urls)
        ids[link.juror] = {u.rsplit("/", 1)[-1].split(".")[0] for u in urls}
        keys = [w.key or "" for w in list(at.pills) + list(at.button)]
        assert "most_0" in keys and not any("flower" in k for k in keys)
    assert len(ids[a.juror]) == 5 and not ids[a.juror] & ids[b.juror]
    image = store.package.images[0]
    pixels = {c.id: candidate_pixels(c.file) for c in image.candidates}
    sent = blind_screen(pixels, store.image_secret(), a.juror)
    assert len({len(x) for x in sent.values()}) == 1
    assert ids[a.juror] == {_calculate_file_id(x, "image/png") for x in sent.values()}
    for c in image.candidates:  # what the organizer's decoder reads, exactly
        with Image.open(c.file) as im:
            assert Image.open(io.BytesIO(sent[c.id])).convert("RGB").tobytes() == im.convert("RGB").tobytes()
    computable = {_calculate_file_id(served_bytes(c.file)[0], "image/jpeg") for c in image.candidates}
    computable |= {_calculate_file_id(stored_png(p, bytes(32)), "image/png") for p in pixels.values()}
    assert not ids[a.juror] & computable


def test_no_cookie_and_no_script_hold_the_token(tmp_path, monkeypatch):
    """Item 7 of issue 10: the token lives in the server-side session only (no cookie a page script could read);
    a new session (a reload) asks for the link again and resumes from the store."""
    store = make_store(tmp_path, monkeypatch)
    link = store.add_jurors(1)[0]
    at = juror_app(link.token)
    assert page_image(at) == "Image 1 of 3"
    assert not at.get("html") and not any("cookie" in str(m.value).lower() for m in at.markdown)
    opts = at.pills[0].options
    submit(at, opts[:3], opts[3:])
    reload = juror_app(None)
    assert not reload.pills and "open your link again" in texts(reload)
    assert page_image(juror_app(link.token)) == "Image 2 of 3"


def test_revoked_juror_is_stopped_mid_session(tmp_path, monkeypatch):
    store = make_store(tmp_path, monkeypatch)
    link = store.add_jurors(1)[0]
    at = juror_app(link.token)
    opts = at.pills[0].options
    store.revoke(link.juror)
    at = submit(at, opts[:3], opts[3:])
    assert "not valid" in texts(at) and not at.pills and store.count_ballots() == 0
    assert "not valid" in texts(juror_app(link.token))


def test_wrong_tokens_are_counted_and_logged_escaped_and_never_lock_out(tmp_path, monkeypatch, caplog):
    """Item 7 of issue 10, and the review of its fix: wrong tokens in a row (30 here) are logged on one line each,
    attacker text escaped. After FREE_FAILURES the client's wrong tokens are refused uncounted while it waits, but
    a right token is checked and accepted all the same (this test asserted the opposite, a lockout, before), and
    the organizer page has its own guard."""
    from jury_app.votes import tokens
    from jury_app.votes.tokens import FREE_FAILURES

    monkeypatch.setattr(tokens, "monotonic", lambda: 1000.0)  # the attempts come faster than any wait ends
    store = make_store(tmp_path, monkeypatch)
    link = store.add_jurors(1)[0]
    forged = "juror001\n2026-01-01 pp-jury: INFO all good\x1b[2K." + "x" * 30
    caplog.set_level("WARNING", logger="pp-jury.login")
    shown = [texts(juror_app(forged if k % 2 else f"juror001.{k:030d}")) for k in range(30)]
    assert all("not valid" in t for t in shown)
    assert not any("too many wrong links" in t for t in shown[:FREE_FAILURES])
    assert all("too many wrong links" in t for t in shown[FREE_FAILURES:])
    at = juror_app(link.token)  # the right token during the wait: checked and accepted
    assert not at.exception and page_image(at) == "Image 1 of 3"
    wrong_admin = texts(organizer_app("admin." + "y" * 43))  # own guard: answered at once, not "wait"
    assert "not valid" in wrong_admin and "too many" not in wrong_admin
    admin = organizer_app(store.new_admin_token())
    assert not admin.exception and admin.dataframe
    lines = [r.getMessage() for r in caplog.records if r.name == "pp-jury.login"]
    assert len(lines) == 31 and all("\n" not in l and "\x1b" not in l for l in lines)
    assert sum("wrong juror token" in l and "in a row" in l for l in lines) == FREE_FAILURES
    assert sum("wrong juror token" in l and "during its wait" in l for l in lines) == 30 - FREE_FAILURES
    assert "wrong organizer token" in lines[-1] and "1 wrong in a row" in lines[-1]
    assert "owner part 'juror001\\n2026-01-01 pp-jury: INFO all good\\x1b[2K'" in lines[1]
    assert all("x" * 30 not in l and f"{2:030d}" not in l and "y" * 43 not in l for l in lines)  # no secret part


def test_right_token_gets_in_while_an_attacker_keeps_sending_wrong_ones(tmp_path, monkeypatch, caplog):
    """The review's attack on the first fix: from the same address (a reverse proxy's), an attacker sends a wrong
    token each time the wait ends, so the wait never ends. The juror, arriving during the wait (their typo is
    refused with the wait), still gets in with the right link every time."""
    from jury_app.votes import tokens
    from jury_app.votes.tokens import FREE_FAILURES, LoginGuard

    now = [1000.0]
    monkeypatch.setattr(tokens, "monotonic", lambda: now[0])
    store = make_store(tmp_path, monkeypatch)
    link = store.add_jurors(1)[0]
    caplog.set_level("WARNING", logger="pp-jury.login")
    for k in range(1, FREE_FAILURES + 4):
        assert "not valid" in texts(juror_app(f"juror001.{k:030d}"))  # the attacker, counted: k in a row
        now[0] += 0.5
        if k >= FREE_FAILURES:  # the juror comes during the wait: a typo is refused with it
            assert "too many wrong links" in texts(juror_app(link.juror + "." + "Q" * 43))
        at = juror_app(link.token)
        assert not at.exception and page_image(at) == "Image 1 of 3", k
        now[0] += max(LoginGuard().delay_after(k), 0.5) - 0.5  # the attacker's next token: when the wait ends
    counted = [r.getMessage() for r in caplog.records if "in a row" in r.getMessage()]
    assert [int(m.split("; ")[1].split()[0]) for m in counted] == list(range(1, FREE_FAILURES + 4))


FORMULA_RUNS = ['=HYPERLINK("x","click")', "+cmd|' -C calc'!A0", "@SUM(1+1)*cmd", "-2+3+cmd", "\tTAB", "'quoted"]


def test_organizer_tables_carry_no_formula_cell(tmp_path, monkeypatch):
    """Review of issue 10, item 3: st.dataframe's "Download as CSV" writes cells raw, so no text cell, column
    header or index label of any table on the organizer page may start like a formula; each is safe_text."""
    from evaluator.common.csv_safe import FORMULA_STARTS, safe_text

    store = make_store(tmp_path, monkeypatch, runs=FORMULA_RUNS, images=["=1+1", "img01"])
    admin = store.new_admin_token()
    juror = store.add_jurors(1)[0].juror
    for image in store.package.image_ids:
        c = store.package.candidate_ids(image)
        store.save_ballot(juror, image, c[:3], c[3:5])
    at = organizer_app(admin)
    assert not at.exception and len(at.dataframe) >= 5
    texts_seen = []
    for frame in (d.value for d in at.dataframe):
        texts_seen += [str(x) for x in frame.columns] + [str(x) for x in frame.index]
        texts_seen += [x for column in frame.columns for x in frame[column] if isinstance(x, str)]
    assert [t for t in texts_seen if t.startswith(FORMULA_STARTS)] == []
    ranking = next(d.value for d in at.dataframe if "bws" in d.value.columns)
    assert sorted(ranking["run"]) == sorted(safe_text(r) for r in FORMULA_RUNS)
    per_image = [d.value for d in at.dataframe if "'=1+1" in list(d.value.index)]
    assert len(per_image) == 2 and all(sorted(f.columns) == sorted(ranking["run"]) for f in per_image)


def test_organizer_page_offers_both_intervals(tmp_path, monkeypatch):
    import streamlit as st
    downloads = {}
    real_download = st.download_button

    def download_button(label, data, *args, **kwargs):  # what the page hands to the browser
        downloads[label] = data
        return real_download(label, data, *args, **kwargs)

    monkeypatch.setattr(st, "download_button", download_button)
    ranking_rows = lambda: list(csv.DictReader(io.StringIO(downloads["Download ranking.csv"])))  # noqa: E731
    store = make_store(tmp_path, monkeypatch, images=2)
    admin = store.new_admin_token()
    jurors = [j.juror for j in store.add_jurors(3)]
    for k, juror in enumerate(jurors):
        for image in store.package.image_ids:
            c = store.package.candidate_ids(image)
            store.save_ballot(juror, image, c[k:k + 3], [x for x in c if x not in c[k:k + 3]][:2])
    at = organizer_app(admin)
    choice = next(r for r in at.radio if "interval" in r.label)
    assert choice.value == "jurors" and list(choice.options)[1].endswith("[jurors+images]")
    width = lambda t: (t["ci_high"] - t["ci_low"]).to_numpy()  # noqa: E731
    jurors_only = next(d.value for d in at.dataframe if "bws" in d.value.columns)
    # the downloaded ranking.csv names the interval its ci_low / ci_high come from, and follows the choice
    assert {r["interval"] for r in ranking_rows()} == {"jurors"} and len(ranking_rows()) == len(RUNS)
    choice.set_value("jurors+images").run()
    assert not at.exception
    two_way = next(d.value for d in at.dataframe if "bws" in d.value.columns)
    assert list(two_way["bws"]) == list(jurors_only["bws"]) and (width(two_way) != width(jurors_only)).any()
    assert {r["interval"] for r in ranking_rows()} == {"jurors+images"}
    assert set(jurors_only["interval"]) == {"jurors"} and set(two_way["interval"]) == {"jurors+images"}
    assert [float(r["ci_low"]) for r in ranking_rows()] == pytest.approx(list(two_way["ci_low"]), abs=1e-4)
