"""pp-jury: run the blind jury of Pixel Privacy on a jury package (`results/jury` of pp-evaluate)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from urllib.parse import quote

try:
    import fcntl
except ImportError:  # Windows: no flock; the jury's votes.sqlite alone keeps pp-evaluate from retiring it
    fcntl = None

from jury_app.votes.ballot import Ballot
from evaluator.common.errors import EXIT_INTERRUPTED, KitError, exit_code_help
from evaluator.contracts.jury_package import (KEY_NAME, MANIFEST_NAME, RANKING_NAME, SERVE_LOCK, PackageError,
                                              check_servable, load_key, load_package)
from evaluator.common.atomic import write_text_atomic
from jury_app.ranking.attention import check_results, failed_jurors
from jury_app.ranking.intervals import DEFAULT_INTERVAL, INTERVALS, QUESTION
from jury_app.ranking.summary import rank_jury, ranking_csv
from jury_app.votes.backends import open_store, store_url
from jury_app.votes.store import ENV_STORE, SIMULATED_PREFIX, StoreError, VoteStoreBase, redact_url
from jury_app.votes.tokens import log_safe
from jury_app.votes.votes_csv import iter_ballots, votes_to_csv

log = logging.getLogger("pp-jury")

DEFAULT_PORT = 8501
DEFAULT_ADDRESS = "127.0.0.1"
APP_FILE = Path(__file__).with_name("app.py")

EPILOG = """\
commands:
  serve DIR                 run the jury web app (juror page at /, organizer page at /organizer); run it N
                            times on N ports against one PostgreSQL store for replicas (docs/jury.md)
  jurors DIR --add N [--completion-prefix P]
                            create N jurors and print one private link per juror (token shown once); with
                            --completion-prefix each juror sees a code P-XXXXXXXXXX after the final submit
  jurors DIR --codes        print juror, final submit time, completion code (to verify the codes pasted
                            into a crowdsourcing platform)
  jurors DIR --revoke ID..  refuse these jurors' links from now on; their ballots stay in the store, not counted
  admin DIR                 create a new organizer link (the previous one stops working)
  export DIR                print all votes as CSV: juror,image,candidate,choice,timestamp
  rank DIR [--votes CSV] [--interval jurors|jurors+images] [--exclude-failed [--max-fail-share X]]
                            write DIR/ranking.csv and print it (with --votes, the ballots of jurors revoked
                            in DIR/votes.sqlite are left out, with a warning naming them):
                            run,most,least,appearances,bws,ci_low,ci_high,rank,interval
                            ci = 95% interval of bws; interval = which one: jurors (default): another jury
                            on these images; jurors+images: another jury on other images (docs/jury.md);
                            with attention checks in the package, each juror's results are printed, and
                            --exclude-failed ranks without jurors who failed more than X of them
  simulate DIR --originals ORIG --jurors N [--seed S]
                            SIMULATED jury: N scripted jurors (ids simulated001...) vote and finalize; for
                            demos and load tests, never on the store real jurors vote in

every command takes --store URL: the vote store (default: DIR/votes.sqlite, or the URL in the environment
variable PP_JURY_STORE): sqlite:///PATH or postgresql://USER@HOST:PORT/DB (password: PGPASSWORD or ~/.pgpass)

""" + exit_code_help() + "\n"


def _base(url: str) -> str:
    return url.rstrip("/")


def juror_link(base_url: str, token: str) -> str:
    return f"{_base(base_url)}/?token={quote(token, safe='')}"


def admin_link(base_url: str, token: str) -> str:
    return f"{_base(base_url)}/organizer?admin={quote(token, safe='')}"


def _default_base(args: argparse.Namespace) -> str:
    return getattr(args, "base_url", None) or f"http://{DEFAULT_ADDRESS}:{DEFAULT_PORT}"


def _hold_serve_lock(directory: str) -> int | None:
    """A shared flock on DIR/.serve.lock (`evaluator.contracts.jury_package.SERVE_LOCK`), inherited by the Streamlit
    process `serve` execs into, so it is held for the server's whole life: pp-evaluate never retires a jury folder
    whose lock it cannot take. Shared: several servers may serve one folder. Taken before the package is
    checked; if a pp-evaluate was deleting this very folder meanwhile, that is found here (PackageError).
    Returns the descriptor, or None where there is no flock (the jury's votes.sqlite then marks it in use)."""
    root = Path(directory).resolve()
    if fcntl is None or not (root / MANIFEST_NAME).is_file():
        return None  # not a package: check_servable says what is wrong
    lock = root / SERVE_LOCK
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
    except OSError:
        return None  # not writable: the vote store says so
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)  # waits only while a pp-evaluate is retiring this very folder
    except OSError:  # no flock on this file system: the jury's votes.sqlite alone marks it in use
        os.close(fd)
        return None
    try:
        same = os.path.samestat(os.fstat(fd), os.stat(lock))
    except OSError:
        same = False
    if not same:
        os.close(fd)
        raise PackageError(f"{root}: was deleted by a pp-evaluate while pp-jury serve started (it was no longer "
                           "the current results); serve the current package, for example results/jury")
    os.set_inheritable(fd, True)
    return fd


def _store(args: argparse.Namespace, package=None) -> VoteStoreBase:
    """The vote store of the command: --store, else PP_JURY_STORE, else DIR/votes.sqlite."""
    return open_store(package if package is not None else load_package(args.dir), store_url(args.store))


def cmd_serve(args: argparse.Namespace) -> int:
    lock = _hold_serve_lock(args.dir)
    try:
        return _serve(args)
    finally:  # only reached when the server did not start (exec replaces this process)
        if lock is not None:
            os.close(lock)


def _serve(args: argparse.Namespace) -> int:
    package, key = check_servable(args.dir)
    if key is None:
        log.warning("%s is missing: jurors can vote, but the organizer page cannot rank runs until it is "
                    "there", package.root / KEY_NAME)
    url = store_url(args.store)
    store = open_store(package, url)
    base = f"http://{args.address}:{args.port}"
    if not store.has_admin_token():
        print(f"organizer link (shown once; `pp-jury admin DIR` makes a new one):\n  "
              f"{admin_link(base, store.new_admin_token())}", file=sys.stderr)
    store.close()  # the app opens its own connections
    env = dict(os.environ, PP_JURY_DIR=str(package.root))
    if url:  # the environment, not argv: a password in the URL never shows in `ps`
        env[ENV_STORE] = url
        log.info("vote store: %s", redact_url(url))
    argv = [sys.executable, "-m", "streamlit", "run", str(APP_FILE),
            "--server.port", str(args.port), "--server.address", args.address,
            "--server.headless", "true", "--browser.gatherUsageStats", "false",
            "--server.fileWatcherType", "none",
            "--client.toolbarMode", "minimal",  # no developer toolbar, "Deploy" or menu for jurors
            "--", str(package.root)]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, argv, env)  # the Streamlit process inherits the serve lock
    return 1  # unreachable


def cmd_jurors(args: argparse.Namespace) -> int:
    if args.completion_prefix is not None and not args.add:
        raise StoreError("--completion-prefix goes with --add N: codes are given to the jurors created then; "
                         "nothing was changed")
    store = _store(args)
    if args.codes:
        for j in store.jurors():
            print(f"{j.juror}\t{j.finalized or 'not final'}\t{j.completion_code or '-'}"
                  + ("\trevoked" if j.revoked else ""))
        return 0
    if args.revoke:
        known = {j.juror for j in store.jurors()}
        unknown = [j for j in args.revoke if j not in known]
        if unknown:
            raise StoreError(f"{store.where}: no juror {unknown[0]!r} in this store (it has {len(known)} jurors: "
                             f"{', '.join(sorted(known)[:5]) or 'none'}{', ...' if len(known) > 5 else ''}); "
                             "pass juror ids as printed by `pp-jury jurors DIR --add N`. Nothing was revoked.")
        for juror in dict.fromkeys(args.revoke):
            new, ballots = store.revoke(juror)
            print(f"{juror}\t{'revoked' if new else 'already revoked'}: its link is refused; its {ballots} "
                  "ballot(s) stay in the vote store and are left out of the ranking and the export")
        return 0
    base = _default_base(args)
    for link in store.add_jurors(args.add, completion_prefix=args.completion_prefix):
        print(f"{link.juror}\t{juror_link(base, link.token)}")
    if not store.has_admin_token():
        print(f"organizer link (shown once; `pp-jury admin DIR` makes a new one):\n  "
              f"{admin_link(base, store.new_admin_token())}", file=sys.stderr)
    return 0


def cmd_admin(args: argparse.Namespace) -> int:
    store = _store(args)
    print(admin_link(_default_base(args), store.new_admin_token()))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    store = _store(args)
    sys.stdout.write(votes_to_csv(store.votes()))
    return 0


def _revoked_jurors(package, url: str | None) -> frozenset[str]:
    """The jurors revoked in the vote store; none when the default store (DIR/votes.sqlite) does not exist (none
    is created)."""
    if not url and not package.store_path.exists():
        return frozenset()
    return frozenset(j.juror for j in open_store(package, url).jurors() if j.revoked)


def _without(ballots: Iterable[Ballot], revoked: frozenset[str], dropped: dict[str, int]) -> Iterator[Ballot]:
    """`ballots` minus those of `revoked` jurors, counted per juror into `dropped`."""
    for ballot in ballots:
        if ballot.juror in revoked:
            dropped[ballot.juror] = dropped.get(ballot.juror, 0) + 1
        else:
            yield ballot


def _noting_simulated(ballots: Iterable[Ballot], seen: dict[str, int]) -> Iterator[Ballot]:
    """`ballots` unchanged, counting in `seen` those of jurors of `pp-jury simulate` (ids simulated001, ...)."""
    for b in ballots:
        if b.juror.startswith(SIMULATED_PREFIX) and b.juror[len(SIMULATED_PREFIX):].isdigit():
            seen[b.juror] = seen.get(b.juror, 0) + 1
        yield b


def cmd_rank(args: argparse.Namespace) -> int:
    package = load_package(args.dir)
    key = load_key(package.root, package)
    dropped: dict[str, int] = {}
    if args.votes:
        ballots = iter_ballots(args.votes, package)
        revoked = _revoked_jurors(package, store_url(args.store))
        if revoked:
            ballots = _without(ballots, revoked, dropped)
    else:
        ballots = _store(args, package).ballots()
    if key.checks:
        ballots = list(ballots)  # read twice: the check results, then the ranking
        results = check_results(ballots, key)
        print("attention checks (failed = the planted check picked as most appealing; checks never count in the "
              "ranking): " + ", ".join(f"{log_safe(r.juror)} {r.failed}/{r.checks} failed" for r in results),
              file=sys.stderr)
        if args.exclude_failed:
            failed = failed_jurors(results, args.max_fail_share)
            left_out = sum(b.juror in failed for b in ballots)
            ballots = [b for b in ballots if b.juror not in failed]
            print(f"--exclude-failed: left out {left_out} ballot(s) of {len(failed)} juror(s) who failed more than "
                  f"{args.max_fail_share:.0%} of their attention checks"
                  + (f": {', '.join(log_safe(j) for j in sorted(failed))}" if failed else ""), file=sys.stderr)
    elif args.exclude_failed:
        raise PackageError(f"{package.root}: this jury package has no attention checks (it was written with "
                           "[jury] attention_every = 0), so --exclude-failed has nothing to go by; rank without it, "
                           "or set attention_every in task.toml and rerun pp-evaluate for the next jury.")
    ballots = _noting_simulated(ballots, simulated := {})
    result = rank_jury(ballots, key, interval=args.interval, seed=args.seed)
    if simulated:
        print(f"warning: {sum(simulated.values())} ballot(s) of {len(simulated)} SIMULATED juror(s) (`pp-jury "
              f"simulate`, scripted, not people) are counted: {', '.join(sorted(simulated)[:5])}"
              f"{', ...' if len(simulated) > 5 else ''}", file=sys.stderr)
    if dropped:
        print(f"warning: left out {sum(dropped.values())} ballot(s) of {len(dropped)} juror(s) revoked in "
              f"{redact_url(store_url(args.store) or str(package.store_path))} (`pp-jury jurors DIR --revoke`): "
              f"{', '.join(log_safe(j) for j in sorted(dropped))}", file=sys.stderr)
    text = ranking_csv(result.scores, result.interval)
    write_text_atomic(package.root / RANKING_NAME, text)
    sys.stdout.write(text)
    a = result.agreement
    print(f"{result.n_ballots} ballots from {a.n_jurors} jurors; Kendall's W = {a.kendall_w:.3f}; "
          f"split-half reliability = {a.split_half:.3f}; 95% intervals ({result.interval}): "
          f"{QUESTION[result.interval]}; wrote {package.root / RANKING_NAME}", file=sys.stderr)
    if (warning := a.warning()) is not None:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from jury_app.testing.simulate import simulate

    package = load_package(args.dir)
    store = open_store(package, store_url(args.store))
    try:
        n = simulate(args.dir, args.originals, args.jurors, args.sigma, args.seed, store=store)
    except (OSError, ValueError) as exc:
        raise StoreError(f"simulate: {exc}") from exc
    print(f"SIMULATED jury: {args.jurors} scripted jurors cast {n} ballots into {store.where}")
    return 0


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a share 0 <= X < 1 (e.g. 0.25)")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pp-jury", description="Run the blind jury of Pixel Privacy on a jury package written by "
        "pp-evaluate (results/jury: manifest.json, key.json, images/). Votes go to DIR/votes.sqlite, or to the "
        "store given by --store URL or PP_JURY_STORE (SQLite or PostgreSQL).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--store", metavar="URL", help=f"the vote store: sqlite:///PATH or postgresql://USER@HOST:PORT/DB "
                        f"(default: the environment variable {ENV_STORE}, else DIR/votes.sqlite)")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="run the jury web app", parents=[common])
    p.add_argument("dir", help="jury package folder")
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    p.add_argument("--address", default=DEFAULT_ADDRESS, help="listen address (default: loopback only)")
    p.set_defaults(func=cmd_serve)
    p = sub.add_parser("jurors", help="create jurors and print their private links", parents=[common])
    p.add_argument("dir")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--add", type=int, metavar="N", help="number of jurors to create")
    what.add_argument("--revoke", nargs="+", metavar="ID",
                      help="juror ids whose links stop working at once (their ballots are kept, not counted)")
    what.add_argument("--codes", action="store_true",
                      help="print each juror's final submit time and completion code (tab-separated)")
    p.add_argument("--completion-prefix", metavar="P", help="with --add: give each new juror a completion code "
                   "P-XXXXXXXXXX, shown after the final submit (e.g. P = your crowdsourcing study's code)")
    p.add_argument("--base-url", help=f"address jurors open (default http://{DEFAULT_ADDRESS}:{DEFAULT_PORT})")
    p.set_defaults(func=cmd_jurors)
    p = sub.add_parser("admin", help="create a new organizer link (invalidates the previous one)",
                       parents=[common])
    p.add_argument("dir")
    p.add_argument("--base-url")
    p.set_defaults(func=cmd_admin)
    p = sub.add_parser("export", help="print the votes as CSV", parents=[common])
    p.add_argument("dir")
    p.set_defaults(func=cmd_export)
    p = sub.add_parser("rank", help="write DIR/ranking.csv and print it", parents=[common])
    p.add_argument("dir")
    p.add_argument("--votes", help="rank this votes CSV instead of DIR/votes.sqlite (the ballots of jurors revoked "
                   "in DIR/votes.sqlite, when there is one, are left out with a warning)")
    p.add_argument("--interval", choices=INTERVALS, default=DEFAULT_INTERVAL,
                   help="what the 95%% interval of bws answers: 'jurors' (default) = another jury from the same "
                   "juror population on these images; 'jurors+images' = another jury on other images too")
    p.add_argument("--seed", type=int, default=0, help="seed of the split-half reliability's random splits")
    p.add_argument("--exclude-failed", action="store_true", help="rank without the jurors who failed more than "
                   "--max-fail-share of their attention checks (packages written with [jury] attention_every > 0)")
    p.add_argument("--max-fail-share", type=_share, default=0.0, metavar="X",
                   help="with --exclude-failed: the share of failed checks a juror may have, 0 <= X < 1 (default 0: "
                   "one failed check excludes)")
    p.set_defaults(func=cmd_rank)
    p = sub.add_parser("simulate", help="SIMULATED jury: scripted jurors vote (demos, load tests)", parents=[common])
    p.add_argument("dir")
    p.add_argument("--originals", required=True, help="folder of the original images (<image id>.png or .jpg)")
    p.add_argument("--jurors", type=int, default=7, help="number of simulated jurors (default 7)")
    p.add_argument("--sigma", type=float, default=0.02, help="preference noise in SSIM units (default 0.02)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_simulate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="pp-jury: %(message)s")
    try:
        return args.func(args)
    except KitError as exc:  # the jury package, votes file, vote store or a ballot: 2 (evaluator.common.errors)
        print(f"pp-jury: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("pp-jury: interrupted; the vote store keeps every ballot submitted before", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
