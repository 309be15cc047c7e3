"""``daskcal survey SURVEY.yaml [--status] [--retry-failed]``: run a multi-site survey.

Wired into :mod:`daskcal.cli` with :func:`add_parser`; also runnable on its own as
``python -m daskcal.cli_survey SURVEY.yaml`` (the same options and exit statuses).

Exit status: 0 when every observation is done, 1 when some failed (they are listed),
2 on bad input (one line naming the file and the problem).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from daskcal import DaskcalError

EXIT_USAGE = 2


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``survey`` subcommand to ``daskcal``'s subparsers.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        What ``parser.add_subparsers()`` returned.

    Returns
    -------
    argparse.ArgumentParser
        The subcommand's parser (its ``func`` default is :func:`cmd_survey`).
    """
    p = subparsers.add_parser(
        "survey", help="run one recipe over many observations on several sites; rerunning "
                       "resumes (state in OUTPUT/survey.db)")
    _arguments(p)
    p.set_defaults(func=cmd_survey)
    return p


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("survey", type=Path, metavar="SURVEY.yaml", help="the survey file")
    p.add_argument("--status", action="store_true",
                   help="print the state of every observation and site, run nothing")
    p.add_argument("--retry-failed", action="store_true",
                   help="make failed observations pending again (and re-enable disabled "
                        "sites) before running")
    p.add_argument("--poll", type=float, default=0.5, metavar="SECONDS",
                   help="seconds between scheduling rounds (default: %(default)s)")


def cmd_survey(args: argparse.Namespace) -> int:
    """Run (or report) a survey.

    Parameters
    ----------
    args : argparse.Namespace
        ``survey`` (path), ``status``, ``retry_failed``, ``poll``.

    Returns
    -------
    int
        0: all done; 1: some observations failed; (bad input raises DaskcalError: 2).
    """
    from daskcal.survey.config import load_survey
    from daskcal.survey.db import Database
    from daskcal.survey.driver import SurveyDriver, retry_failed, summary_table

    if args.poll <= 0:
        raise DaskcalError(f"--poll {args.poll}: must be > 0 seconds")
    survey = load_survey(args.survey, check_paths=not args.status)

    def echo(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    if args.status:
        db = Database(survey.database)
        try:
            print(summary_table(db))
        finally:
            db.close()
        return 0
    if args.retry_failed:
        db = Database(survey.database)
        try:
            names = retry_failed(db)
        finally:
            db.close()
        echo(f"{len(names)} failed observations made pending again"
             + (f": {', '.join(names)}" if names else ""))
    rows = SurveyDriver(survey, echo=echo, poll_s=args.poll).run()
    db = Database(survey.database)
    try:
        print(summary_table(db))
    finally:
        db.close()
    failed = [r["name"] for r in rows if r["state"] == "failed"]
    if failed:
        echo(f"{len(failed)} observations failed: {', '.join(failed)} (see the table; rerun "
             f"with --retry-failed to try them again)")
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m daskcal.cli_survey``: the ``survey`` subcommand on its own."""
    parser = argparse.ArgumentParser(prog="daskcal survey", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more logging (repeat for debug)")
    _arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=max(logging.WARNING - 10 * args.verbose, logging.DEBUG),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return cmd_survey(args)
    except DaskcalError as exc:
        print(f"daskcal survey: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("daskcal survey: interrupted (rerun to resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
