"""The weblog: static HTML pages of a run, built from its provenance and QA files.

Layout (self-contained: plain HTML and CSS, PNG plots next to the pages, no scripts)::

    RUN_DIR/weblog/index.html        overview: observation summary, overall score and the
                                     worst reasons, steps with scores, products, timing
    RUN_DIR/weblog/NN-name.html      a page per step: metrics, plots
    RUN_DIR/weblog/plots/*.png       the plots

Built by the runner at the end of a run and by ``daskcal weblog RUN_DIR`` from an
existing run (:func:`build_weblog`); only ``provenance.json``, ``RUN_DIR/qa/`` and the
input's metadata are read.
"""

from __future__ import annotations

import html
import json
import os
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from daskcal.qa import plots
from daskcal.qa.collect import load_step_qa, load_summaries, split
from daskcal.qa.metrics import StepQA, overall_score, threshold_rows
from daskcal.qa.summary import antenna_flag_fraction

_CSS = """
body { font-family: sans-serif; margin: 1.5em; max-width: 70em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em 0; }
th, td { border: 1px solid #bbb; padding: 0.25em 0.6em; text-align: left; }
th { background: #eee; }
.good { background: #cfc; } .ok { background: #ffc; } .bad { background: #fcc; }
.none { background: #ddd; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.3em 0; }
nav a { margin-right: 1em; }
"""


def _esc(x: Any) -> str:
    return html.escape(str(x))


def score_class(score: float | None) -> str:
    """CSS class of a score: good (>= 0.9), ok (>= 0.66), bad, or none."""
    if score is None:
        return "none"
    return "good" if score >= 0.9 else ("ok" if score >= 0.66 else "bad")


def _score_cell(score: float | None) -> str:
    text = "n/a" if score is None else f"{score:.2f}"
    return f'<td class="{score_class(score)}">{text}</td>'


def _page(title: str, body: str, home: bool = False) -> str:
    nav = "" if home else '<nav><a href="index.html">overview</a></nav>'
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>\n{nav}"
            f"<h1>{_esc(title)}</h1>\n{body}\n</body></html>\n")


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(r) + "</tr>\n" for r in rows)
    return f"<table><tr>{head}</tr>\n{body}</table>"


def _td(x: Any) -> str:
    return f"<td>{_esc(x)}</td>"


def _img(rel: str, alt: str) -> str:
    return f'<p><img src="{_esc(rel)}" alt="{_esc(alt)}"></p>'


# ----------------------------------------------------------------------------- overview


def _observation(prov: Mapping[str, Any]) -> str:
    rows = []
    for name, fp in (prov.get("inputs") or {}).items():
        path = fp.get("path")
        try:
            from daskcal.data.open import describe, open_observation

            d = describe(open_observation(path))
        except Exception as exc:  # the input may be gone: show what provenance has
            rows.append([_td(name), _td(path), _td(f"(not readable: {type(exc).__name__})")])
            continue
        t, f = d["time"], d["frequency"]
        fields = ", ".join(fl["name"] for fl in d["fields"])
        text = (f"{t['start']} .. {t['end']} ({t['duration_s']:.0f} s, {t['n_time']} "
                f"integrations); {f['min_hz'] / 1e6:.3f} .. {f['max_hz'] / 1e6:.3f} MHz, "
                f"{f['n_chan']} channels; {d['antennas']['count']} antennas, "
                f"{d['baselines']['count']} baselines; fields {fields}; "
                f"correlations {', '.join(d['polarizations'])}; "
                f"{d['data_bytes'] / 1e6:.1f} MB")
        rows.append([_td(name), _td(path), _td(text)])
    return _table(["input", "path", "summary"], rows)


def _products(prov: Mapping[str, Any], out: Path, run_dir: Path) -> str:
    rows = []
    for name, value in (prov.get("products") or {}).items():
        files = value if isinstance(value, list) else [f"products/{name}.zarr"]
        links = []
        for f in files:
            target = run_dir / f
            rel = os.path.relpath(target, out)
            link = f'<a href="{_esc(rel)}">{_esc(f)}</a>' if target.exists() else _esc(f)
            links.append(link)
        rows.append([_td(name), "<td>" + "<br>".join(links) + "</td>"])
    return _table(["product (step)", "files"], rows)


def _overview(prov: Mapping[str, Any], qas: list[tuple[dict, StepQA | None]],
              out: Path, run_dir: Path) -> str:
    overall = overall_score([q for _, q in qas if q is not None])
    recipe = prov.get("recipe", {})
    parts = [f"<p>recipe <b>{_esc(recipe.get('name'))}</b> ({_esc(recipe.get('source'))}), "
             f"status <b>{_esc(prov.get('status'))}</b>, started {_esc(prov.get('started'))},"
             f" finished {_esc(prov.get('finished'))}, site {_esc(prov.get('site'))}</p>"]
    parts.append("<h2>Observation</h2>" + _observation(prov))
    parts.append("<h2>Quality</h2>" + _table(
        ["overall score (min)", "weighted mean"],
        [[_score_cell(overall["score"]), _score_cell(overall["mean"])]]))
    if overall["reasons"]:
        parts.append("<p>Worst metrics:</p>" + _table(
            ["step", "metric", "score", "reason"],
            [[_td(r["step"]), _td(r["name"]), _score_cell(r["score"]), _td(r["reason"])]
             for r in overall["reasons"]]))
    rows = []
    for rec, qa in qas:
        page = f"{Path(rec['output']).name.split('.')[0]}.html"
        rows.append([f'<td><a href="{_esc(page)}">{_esc(rec["index"])} {_esc(rec["name"])}'
                     "</a></td>", _td(rec["stage"]), _td(rec.get("status", "")),
                     _score_cell(qa.score if qa else None),
                     _td(qa.reason if qa else "no QA")])
    parts.append("<h2>Steps</h2>" + _table(["step", "stage", "status", "score", "reason"],
                                           rows))
    parts.append("<h2>Products</h2>" + _products(prov, out, run_dir))
    steps = [rec for rec, _ in qas]
    if steps:
        plots.plot_timing(steps, out / "plots" / "timing.png")
        parts.append("<h2>Timing</h2>" + _img("plots/timing.png", "step timing"))
    parts.append("<h2>Scoring table</h2>" + _table(
        ["metric", "good", "bad", "meaning"],
        [[_td(r["name"]), _td(r["good"]), _td(r["bad"]), _td(r["description"])]
         for r in threshold_rows()]))
    return _page(f"daskcal run: {recipe.get('name', '')}", "\n".join(parts), home=True)


# ----------------------------------------------------------------------------- steps


def _step_plots(stem: str, summaries: Mapping[str, Any], out: Path) -> list[str]:
    html_parts = []
    for part, s in split(summaries).items():
        html_parts.append(f"<h2>Partition {_esc(part)}</h2>")
        made: list[tuple[str, str]] = []
        base = f"plots/{stem}-{part}"
        if "vis" in s:
            vis = s["vis"]
            made += [(plots.plot_uv(vis, out / f"{base}-uv.png").name, "uv coverage"),
                     (plots.plot_vis_time(vis, out / f"{base}-vis-time.png").name,
                      "amplitude and phase against time"),
                     (plots.plot_vis_freq(vis, out / f"{base}-vis-freq.png").name,
                      "amplitude and phase against frequency"),
                     (plots.plot_flag_map(vis, out / f"{base}-flags.png").name,
                      "flagged fraction, time x frequency")]
            before = None
            if "before" in s and "FLAG_BASELINE" in s["before"] and \
                    s["before"].sizes.get("baseline_id") == vis.sizes.get("baseline_id"):
                before = antenna_flag_fraction(s["before"].assign_coords(
                    baseline_antenna1_name=vis["baseline_antenna1_name"],
                    baseline_antenna2_name=vis["baseline_antenna2_name"]))
            made.append((plots.plot_antenna_flags(antenna_flag_fraction(vis), before,
                                                  out / f"{base}-ant-flags.png").name,
                         "flagged fraction per antenna"))
        if "gains" in s:
            g = s["gains"]
            made += [(plots.plot_gains(g, "time", out / f"{base}-gains-time.png").name,
                      "gains against time"),
                     (plots.plot_gains(g, "frequency", out / f"{base}-gains-freq.png").name,
                      "gains against frequency")]
            if "CHI2" in g:
                made.append((plots.plot_chi2(g, out / f"{base}-chi2.png").name,
                             "reduced chi-squared"))
        if "image" in s:
            made.append((plots.plot_image(s["image"], "IMAGE", out / f"{base}-image.png").name,
                         f"{s['image'].attrs.get('variable', 'image').lower()} image "
                         "(block maxima)"))
        if "ateam_before" in s and "ateam_after" in s:
            b, a = s["ateam_before"], s["ateam_after"]
            html_parts.append(_table(
                ["A-team source", "apparent flux before (Jy)", "after (Jy)"],
                [[_td(src), _td(f"{float(b['ATEAM_FLUX'].sel(source=src)):.3g}"),
                  _td(f"{float(a['ATEAM_FLUX'].sel(source=src)):.3g}")]
                 for src in b["source"].values]))
        html_parts += [_img(f"plots/{name}", alt) for name, alt in made]
    return html_parts


def _step_page(rec: Mapping[str, Any], qa: StepQA | None, run_dir: Path, out: Path) -> str:
    stem = Path(rec["output"]).name.split(".")[0]
    parts = [f"<p>stage <b>{_esc(rec['stage'])}</b> ({_esc(rec.get('kind'))}), input "
             f"{_esc(rec.get('input'))}"
             + (f", gains {_esc(rec['gains'])}" if rec.get("gains") else "")
             + f", status {_esc(rec.get('status'))}, {rec.get('duration_s', 0)} s, "
             f"{rec.get('n_tasks', 0)} tasks, output <code>{_esc(rec.get('output'))}</code>"
             "</p>"]
    if qa is not None:
        parts.append(_table(["score", "reason"], [[_score_cell(qa.score), _td(qa.reason)]]))
        parts.append("<h2>Metrics</h2>" + _table(
            ["metric", "partition", "value", "score", "reason"],
            [[_td(m.name), _td(m.partition), _td("" if m.value is None else f"{m.value:.4g}"),
              _score_cell(m.score), _td(m.reason)] for m in qa.metrics]))
    for f in rec.get("files", []) or []:
        rel = os.path.relpath(run_dir / f, out)
        parts.append(f'<p>product: <a href="{_esc(rel)}">{_esc(f)}</a></p>')
    summaries = load_summaries(run_dir / "qa" / f"{stem}.zarr")
    parts += _step_plots(stem, summaries, out)
    parts.append("<h2>Config</h2><pre>" + _esc(json.dumps(rec.get("config", {}), indent=2))
                 + "</pre>")
    return _page(f"step {rec['index']}: {rec['name']}", "\n".join(parts))


def _write_step_page(rec: Mapping[str, Any], qa_file: str | None, run_dir: Path,
                     out: Path) -> str:
    """Write the page of one step (and its plots); returns the page's file name."""
    import warnings

    qa = load_step_qa(run_dir / qa_file) if qa_file else None
    stem = Path(rec["output"]).name.split(".")[0]
    with warnings.catch_warnings():
        # matplotlib's layout and legend advice is not a reason to lose the weblog
        warnings.filterwarnings("ignore", category=UserWarning)
        html = _step_page(rec, qa, run_dir, out)
    tmp = out / f".{stem}.html.tmp"
    tmp.write_text(html)
    os.replace(tmp, out / f"{stem}.html")
    return f"{stem}.html"


def build_weblog(run_dir: str | os.PathLike, client: Any = None,
                 gather: Callable[[list[Any]], Any] | None = None) -> Path:
    """Build (or rebuild) ``RUN_DIR/weblog`` from a run's provenance and QA files.

    Parameters
    ----------
    run_dir : path-like
        A run directory (with ``provenance.json``).
    client : distributed.Client, optional
        Draw the step pages as tasks on its workers (one task per step, in parallel; the
        workers must see ``run_dir``), else here one after another.
    gather : callable, optional
        Waits for the page tasks (their futures) on the workers (default:
        ``client.gather``); e.g. one that gives up when the workers stay paused for memory
        (:func:`daskcal.pipeline.execute.gather_watched`).

    Returns
    -------
    pathlib.Path
        ``RUN_DIR/weblog/index.html``.

    Raises
    ------
    FileNotFoundError
        If the run has no ``provenance.json``.
    """
    run_dir = Path(run_dir)
    prov_path = run_dir / "provenance.json"
    prov = json.loads(prov_path.read_text())
    out = run_dir / "weblog"
    (out / "plots").mkdir(parents=True, exist_ok=True)
    qas: list[tuple[dict, StepQA | None]] = []
    files: list[str | None] = []
    for rec in prov.get("steps", []):
        f = (rec.get("qa") or {}).get("file")
        files.append(f)
        qas.append((rec, load_step_qa(run_dir / f) if f else None))
    recs = [rec for rec, _ in qas]
    if client is None:
        for rec, f in zip(recs, files, strict=True):
            _write_step_page(rec, f, run_dir, out)
    else:  # one task per page: the plots are drawn by the workers' processes in parallel
        n, tag = len(recs), uuid.uuid4().hex[:8]  # unique: runs may share a scheduler
        (gather or client.gather)(client.map(
            _write_step_page, recs, files, [run_dir] * n, [out] * n,
            key=[f"weblog-page-{tag}-{k}" for k in range(n)]))
    index = out / "index.html"
    index.write_text(_overview(prov, qas, out, run_dir))
    return index


__all__ = ["build_weblog", "score_class"]
