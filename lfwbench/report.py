"""Results -> one self-contained HTML report (Jinja2, Plotly, base64 thumbnails); no TensorFlow here.

The page inlines its CSS and plotly.js once, embeds faces as small JPEG data URIs, and is deterministic given
its inputs (fixed div ids, sorted keys) apart from the header block holding date and versions.
"""

from __future__ import annotations

import base64
import itertools
import re
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import cv2
import jinja2
import numpy as np
import plotly
import plotly.graph_objects as go
from markupsafe import Markup
from plotly.subplots import make_subplots
from scipy.stats import norm

from lfwbench import __version__
from lfwbench.errors import ImageError
from lfwbench.files import is_file_name, refuse_overwriting, write_text, write_texts
from lfwbench.images import ImageSpec, decode_image, find_variant, image_path
from lfwbench.metrics import mcnemar_exact, percent, shown, threshold_label
from lfwbench.results import Crossval, PairRecord, Results, results_json

THUMBNAIL_SIDE = 88
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
SAME_COLOUR, DIFFERENT_COLOUR = "#2a9d8f", "#e76f51"


@dataclass
class Card:
    """A gallery entry: both faces, the names, label, probability and whether the model was right."""

    pair: PairRecord
    left: str
    right: str
    note: str = ""


def _environment() -> jinja2.Environment:
    """Templates come from the installed package (lfwbench.templates), never from the working directory."""
    folder = files("lfwbench.templates")
    environment = jinja2.Environment(
        loader=jinja2.FunctionLoader(lambda name: (folder / name).read_text(encoding="utf-8")),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    environment.filters.update(shown=shown, percent=percent)  # an undefined figure reads n/a
    return environment


def figure_html(figure: go.Figure, div_id: str) -> Markup:
    """The one place Plotly markup is marked safe: a div with a fixed id, plotly.js included once elsewhere."""
    figure.update_layout(template="plotly_white", margin={"l": 50, "r": 20, "t": 40, "b": 45}, height=360)
    html = figure.to_html(
        full_html=False, include_plotlyjs=False, div_id=div_id, config={"displaylogo": False, "responsive": True}
    )
    return Markup(html)


def thumbnail(path: str | Path, root: Path | None, side: int = THUMBNAIL_SIDE) -> str:
    """A small JPEG of the face as a data URI; an empty string when the file is gone, unusable, or outside the data
    root (a report embeds only images of the data root it was given, never just any file a results file names)."""
    try:
        inside = root is not None and Path(path).resolve().is_relative_to(root.resolve())
        image = decode_image(path, ImageSpec(side, 3)) if inside else None
    except (ImageError, OSError):
        image = None
    if image is None:
        return ""
    image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 72])
    return "data:image/jpeg;base64," + base64.b64encode(encoded.tobytes()).decode() if ok else ""


def _balanced(pairs: list[PairRecord], count: int) -> list[PairRecord]:
    """Up to `count` pairs alternating 'same' and 'different', each class in the given order."""
    same = [p for p in pairs if p.label == 1]
    different = [p for p in pairs if p.label == 0]
    mixed = [p for duo in itertools.zip_longest(same, different) for p in duo if p is not None]
    return mixed[:count]


def gallery_sections(results: Results, count: int) -> list[tuple[str, str, list[PairRecord]]]:
    """Most confident mistakes, then borderline pairs, then confident correct ones, both classes in each; right and
    wrong, near and far, at the operating point."""
    margin = lambda pair: abs(results.margin(pair))  # noqa: E731
    wrong = sorted((p for p in results.pairs if not p.correct), key=margin, reverse=True)
    right = sorted((p for p in results.pairs if p.correct), key=margin, reverse=True)
    borderline = sorted(results.pairs, key=margin)
    threshold = results.operating_point.threshold
    near = "each fold's threshold" if threshold is None else f"{threshold:.4g}"
    return [
        ("mistakes", "Most confident mistakes", _balanced(wrong, count)),
        ("borderline", f"Borderline pairs (score near {near})", _balanced(borderline, count)),
        ("correct", "Confident correct pairs", _balanced(right, count)),
    ]


class Thumbnails:
    """Faces for the gallery, each encoded once, read only from the image folder of the data root given on the
    command line: a pair's names and numbers locate its images there (names are plain folder names)."""

    def __init__(self, root: Path | None):
        self.image_dir = find_variant(root)[1] if root is not None else None
        self.encoded: dict[tuple[str, int], str] = {}

    def __call__(self, name: str, index: int) -> str:
        if self.image_dir is None or not is_file_name(name):
            return ""
        if (name, index) not in self.encoded:
            self.encoded[name, index] = thumbnail(image_path(self.image_dir, name, index), self.image_dir)
        return self.encoded[name, index]


def _cards(pairs: list[PairRecord], thumbnails: Thumbnails) -> list[Card]:
    return [Card(pair, thumbnails(pair.name1, pair.image1), thumbnails(pair.name2, pair.image2)) for pair in pairs]


def training_figure(results: list[Results]) -> go.Figure | None:
    histories = [(r.name, r.training.get("history") or []) for r in results]
    if not any(history for _, history in histories):
        return None
    figure = make_subplots(rows=1, cols=2, subplot_titles=("Loss", "Accuracy"))
    for index, (name, history) in enumerate(histories):
        epochs = [row["epoch"] for row in history]
        colour = COLOURS[index % len(COLOURS)]
        for column, metric in ((1, "loss"), (2, "accuracy")):
            for prefix, dash in (("", "solid"), ("val_", "dash")):
                figure.add_trace(
                    go.Scatter(
                        x=epochs,
                        y=[row.get(prefix + metric) for row in history],
                        name=f"{name} {'validation' if prefix else 'training'} {metric}",
                        line={"color": colour, "dash": dash},
                    ),
                    row=1,
                    col=column,
                )
    figure.update_xaxes(title_text="epoch")
    return figure


def roc_figure(results: list[Results]) -> go.Figure:
    figure = go.Figure()
    figure.add_trace(go.Scatter(x=[0, 1], y=[0, 1], name="chance", line={"color": "#bbb", "dash": "dot"}))
    for index, result in enumerate(results):
        roc, colour = result.metrics.roc, COLOURS[index % len(COLOURS)]
        figure.add_trace(
            go.Scatter(
                x=roc["fpr"], y=roc["tpr"], name=f"{result.name} (AUC {shown(result.metrics.auc, '.3f')})",
                line={"color": colour}, customdata=roc["threshold"],
                hovertemplate="FPR %{x:.3f}<br>TPR %{y:.3f}<br>threshold %{customdata:.3f}",
            )
        )  # fmt: skip
        points = ((result.metrics.at_half, "circle", "0.5"), (result.metrics.at_threshold, "diamond", "operating"))
        for point, symbol, which in points:
            if point is not None:
                figure.add_trace(
                    go.Scatter(
                        x=[1 - point.tnr], y=[point.tpr], mode="markers", showlegend=True,
                        marker={"color": colour, "size": 11, "symbol": symbol},
                        name=f"{result.name} {which} ({threshold_label(point.threshold)})",
                    )
                )  # fmt: skip
    figure.update_xaxes(title_text="false positive rate (different pairs called same)", range=[0, 1])
    figure.update_yaxes(title_text="true positive rate (same pairs called same)", range=[0, 1.01])
    return figure


def det_figure(results: list[Results]) -> go.Figure:
    """Detection error trade-off: false rejects against false accepts on normal-deviate axes, as NIST draws it."""
    figure = go.Figure()
    for index, result in enumerate(results):
        det = result.metrics.curves.det
        figure.add_trace(
            go.Scatter(x=det["fpr_probit"], y=det["fnr_probit"], name=result.name,
                       line={"color": COLOURS[index % len(COLOURS)]})
        )  # fmt: skip
    ticks = [0.001, 0.01, 0.05, 0.2, 0.5, 0.8]
    axis = {"tickvals": norm.ppf(ticks).tolist(), "ticktext": [f"{100 * t:g}%" for t in ticks]}
    figure.update_xaxes(title_text="false accept rate (different pairs called same)", **axis)
    figure.update_yaxes(title_text="false reject rate (same pairs called different)", **axis)
    return figure


def calibration_figure(result: Results) -> go.Figure | None:
    """Reliability diagram: in each band of predicted P(same), the share of pairs that are the same person (only
    probabilities have one)."""
    calibration = result.metrics.curves.calibration
    if calibration is None:
        return None
    figure = go.Figure()
    figure.add_trace(go.Scatter(x=[0, 1], y=[0, 1], name="calibrated", line={"color": "#bbb", "dash": "dot"}))
    figure.add_trace(
        go.Scatter(x=calibration["predicted"], y=calibration["observed"], mode="lines+markers", name=result.name,
                   line={"color": COLOURS[0]})
    )  # fmt: skip
    figure.update_xaxes(title_text="predicted probability of 'same' (mean in each band)", range=[0, 1])
    figure.update_yaxes(title_text="share of 'same' pairs", range=[0, 1.01])
    return figure


def score_axis(result: Results) -> dict:
    """The x axis of a figure over scores: 0-1 for a probability, the scores' own range otherwise."""
    kind = result.model.score_kind
    if kind == "probability":
        return {"title_text": "probability of 'same'", "range": [0, 1]}
    return {"title_text": f"{kind} ({'lower' if kind == 'distance' else 'higher'} means same)"}


def distribution_figure(result: Results) -> go.Figure:
    probabilities = result.model.score_kind == "probability"
    figure = go.Figure()
    for label, name, colour in ((1, "same person", SAME_COLOUR), (0, "different people", DIFFERENT_COLOUR)):
        scores = [p.score for p in result.pairs if p.label == label]
        bins = {"xbins": {"size": 0.025}} if probabilities else {"nbinsx": 60}
        figure.add_trace(go.Histogram(x=scores, name=name, marker_color=colour, opacity=0.65, **bins))
    if probabilities:
        figure.add_vline(x=0.5, line_dash="dash", annotation_text="0.5")
    point = result.metrics.at_threshold
    if point is not None and point.threshold is not None:
        figure.add_vline(
            x=point.threshold,
            line_dash="dot",
            line_color="#555",
            annotation_text=f"operating {point.threshold:.4g}",
            annotation_position="bottom right",
        )
    figure.update_layout(barmode="overlay")
    figure.update_xaxes(**score_axis(result))
    figure.update_yaxes(title_text="pairs")
    return figure


def threshold_figure(result: Results) -> go.Figure:
    curve = result.metrics.threshold_curve
    figure = go.Figure()
    for key, name, colour in (("accuracy", "accuracy", "#264653"), ("tpr", "TPR (same)", SAME_COLOUR),
                              ("tnr", "TNR (different)", DIFFERENT_COLOUR)):  # fmt: skip
        figure.add_trace(go.Scatter(x=curve["threshold"], y=curve[key], name=name, line={"color": colour}))
    figure.update_xaxes(title_text="threshold on the " + score_axis(result)["title_text"])
    figure.update_yaxes(range=[0, 1.01])
    return figure


def confusion_figure(result: Results) -> go.Figure:
    (tn, fp), (fn, tp) = result.operating_point.confusion
    figure = go.Figure(
        go.Heatmap(
            z=[[tp, fn], [fp, tn]], x=["predicted same", "predicted different"], y=["same", "different"],
            text=[[tp, fn], [fp, tn]], texttemplate="%{text}", colorscale="Blues", showscale=False,
        )
    )  # fmt: skip
    figure.update_yaxes(autorange="reversed", title_text="true class")
    figure.update_layout(height=300)
    return figure


def comparisons(results: list[Results]) -> list[dict]:
    """McNemar's exact test between each two models scored on the same pairs."""
    rows = []
    for first, second in itertools.combinations(results, 2):
        if not same_pairs([first, second]):
            rows.append({"first": first.name, "second": second.name, "note": "scored on different pairs: not compared"})
            continue
        test = mcnemar_exact(np.array([p.correct for p in first.pairs]), np.array([p.correct for p in second.pairs]))
        rows.append({"first": first.name, "second": second.name, "note": "", **test})
    return rows


def same_pairs(results: list[Results]) -> bool:
    """Whether the models were scored on the same list, pair for pair."""
    first = results[0]
    return all(
        r.data.pair_list_md5 == first.data.pair_list_md5 and [p.line for p in r.pairs] == [p.line for p in first.pairs]
        for r in results[1:]
    )


def disagreement_cards(results: list[Results], count: int, thumbnails: Thumbnails) -> list[Card]:
    """Pairs on which the models' verdicts differ, those they disagree on most first (the widest spread of their
    margins from their own thresholds), balanced over same and different; each card gives every model's verdict."""
    if not same_pairs(results):
        return []
    margins = np.array([[r.margin(p) for p in r.pairs] for r in results])
    verdicts = np.array([[p.predicted for p in r.pairs] for r in results])
    split = np.flatnonzero(verdicts.min(0) != verdicts.max(0))
    spread = margins.max(0) - margins.min(0)
    ranked = [results[0].pairs[k] for k in split[np.argsort(-spread[split], kind="stable")]]
    chosen = _balanced(ranked, count)
    index = {id(pair): k for k, pair in enumerate(results[0].pairs)}
    cards = _cards(chosen, thumbnails)
    for card in cards:
        k = index[id(card.pair)]
        card.note = "; ".join(
            f"{r.name}: {r.pairs[k].score:.4g}, {'same' if r.pairs[k].predicted else 'different'} "
            f"{'✓' if r.pairs[k].correct else '✗'}"
            for r in results
        )
    return cards


def plotly_script(plotlyjs: str) -> Markup:
    """plotly.js once per page: inlined (offline, about 4.7 MB) or from the CDN."""
    if plotlyjs == "inline":
        return Markup(f"<script>{plotly.offline.get_plotlyjs()}</script>")
    return Markup(f'<script src="https://cdn.plot.ly/plotly-{plotly.offline.get_plotlyjs_version()}.min.js"></script>')


def crossval_figures(crossval: Crossval) -> dict[str, Markup]:
    """The fold-averaged and pooled ROC, and each fold's accuracy at its threshold."""
    roc = go.Figure()
    roc.add_trace(go.Scatter(x=[0, 1], y=[0, 1], name="chance", line={"color": "#bbb", "dash": "dot"}))
    for key, name, colour in (
        ("averaged_roc", "averaged over folds", COLOURS[0]),
        ("pooled_roc", "pooled", COLOURS[1]),
    ):
        curve = getattr(crossval, key)
        roc.add_trace(
            go.Scatter(
                x=curve["fpr"], y=curve["tpr"], name=name, line={"color": colour}, customdata=curve["threshold"],
                hovertemplate="FPR %{x:.3f}<br>TPR %{y:.3f}<br>threshold %{customdata:.3f}",
            )
        )  # fmt: skip
    roc.update_xaxes(title_text="false positive rate (different pairs called same)", range=[0, 1])
    roc.update_yaxes(title_text="true positive rate (same pairs called same)", range=[0, 1.01])
    folds = go.Figure(
        go.Bar(
            x=[f"fold {row.fold}" for row in crossval.folds], y=[row.accuracy for row in crossval.folds],
            text=[f"threshold {row.threshold:.3f}" for row in crossval.folds], marker_color=COLOURS[0],
        )
    )  # fmt: skip
    folds.update_yaxes(title_text="accuracy at the fold's validation threshold", range=[0, 1])
    return {"roc": figure_html(roc, "fig-crossval-roc"), "thresholds": figure_html(folds, "fig-crossval-folds")}


def write_crossval_report(
    path: str | Path, crossval: Crossval, devtest: Results | None = None, plotlyjs: str = "inline"
) -> Path:
    """The View 2 report: per-fold table, ROC averaged over folds, configuration, machine; written atomically."""
    html = (
        _environment()
        .get_template("crossval.html.j2")
        .render(
            crossval=crossval,
            devtest=devtest,
            figures=crossval_figures(crossval),
            css=Markup((files("lfwbench.templates") / "report.css").read_text(encoding="utf-8")),
            plotly_script=plotly_script(plotlyjs),
            lfwbench_version=__version__,
        )
    )
    write_text(path, html)
    return Path(path)


def render_report(results: list[Results], plotlyjs: str = "inline", gallery: int = 10, root: Path | None = None) -> str:
    """The report of one or several evaluations, as one HTML string; the gallery shows faces from `root`'s images
    only (without one, names and scores)."""
    thumbnails = Thumbnails(root)
    figures = {}
    training = training_figure(results)
    if training is not None:
        figures["training"] = figure_html(training, "fig-training")
    figures["roc"] = figure_html(roc_figure(results), "fig-roc")
    figures["det"] = figure_html(det_figure(results), "fig-det")
    models = []
    for index, result in enumerate(results):
        calibration = calibration_figure(result)
        models.append(
            {
                "result": result,
                "anchor": f"model-{index + 1}",
                "distribution": figure_html(distribution_figure(result), f"fig-distribution-{index + 1}"),
                "thresholds": figure_html(threshold_figure(result), f"fig-thresholds-{index + 1}"),
                "confusion": figure_html(confusion_figure(result), f"fig-confusion-{index + 1}"),
                "calibration": figure_html(calibration, f"fig-calibration-{index + 1}") if calibration else None,
                "gallery": [
                    (key, title, _cards(pairs, thumbnails)) for key, title, pairs in gallery_sections(result, gallery)
                ],
                "training_seconds": sum(row.get("seconds", 0) for row in result.training.get("history", [])),
            }
        )
    disagreements = disagreement_cards(results, gallery, thumbnails) if len(results) > 1 else []
    script = plotly_script(plotlyjs)
    environment = _environment()
    return environment.get_template("report.html.j2").render(
        results=results,
        models=models,
        figures=figures,
        comparisons=comparisons(results) if len(results) > 1 else [],
        disagreements=disagreements,
        pictures=thumbnails.image_dir is not None,
        stats=results[0].data.stats,
        css=Markup((files("lfwbench.templates") / "report.css").read_text(encoding="utf-8")),
        plotly_script=script,
        lfwbench_version=__version__,
    )


def write_report(
    path: str | Path, results: list[Results], plotlyjs: str = "inline", gallery: int = 10, root: Path | None = None
) -> Path:
    """Render and write the report atomically (temporary file, then rename): never a half-written page."""
    write_text(path, render_report(results, plotlyjs, gallery, root))
    return Path(path)


REPORTS = Path("reports")  # where a report goes when no --out is given


def slug(text: str) -> str:
    """A name fit for a file name: letters, digits, `.`, `_` and `-`; anything else becomes `-`."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")[:80] or "report"


@dataclass
class ReportFiles:
    """Where one report goes: the page, each input's results beside it, and the tables asked for."""

    html: Path
    results: list[Path]
    summary: Path | None = None
    latex: Path | None = None

    @property
    def all(self) -> list[Path]:
        return [self.html, *self.results, *(path for path in (self.summary, self.latex) if path)]


def report_files(
    results: list[Results], out: Path | None, summary: Path | None, latex: Path | None, inputs: list[Path]
) -> ReportFiles:
    """NAME.html with NAME.json beside it (NAME.1.json, NAME.2.json, ... for several inputs); by default
    reports/<input>-<list>.html, or reports/comparison-<list>.html for several. Refused, before anything is written,
    where an output would replace one of `inputs` or another output."""
    scored_on = slug(Path(results[0].data.pair_list_name).stem)
    name = slug(results[0].name.replace("/", "-")) if len(results) == 1 else "comparison"
    html = out or REPORTS / f"{name}-{scored_on}.html"
    json_files = [html.with_suffix(".json")] if len(results) == 1 else [
        html.with_suffix(f".{n}.json") for n in range(1, len(results) + 1)
    ]  # fmt: skip
    files = ReportFiles(html, json_files, summary, latex)
    refuse_overwriting(files.all, inputs)
    return files


def write_report_files(
    files: ReportFiles, results: list[Results], plotlyjs: str = "inline", gallery: int = 10, root: Path | None = None
) -> None:
    """Render the page, the results and the tables, then write them all or none."""
    texts = {files.html: render_report(results, plotlyjs, gallery, root)}
    texts |= {path: results_json(result) for path, result in zip(files.results, results, strict=True)}
    for path, table in ((files.summary, summary_markdown), (files.latex, summary_latex)):
        if path:
            texts[path] = table(results)
    write_texts(texts)


SUMMARY_COLUMNS = ("model", "scored on", "pairs", "accuracy (95% CI)", "threshold", "TPR", "TNR", "AUC (95% CI)",
                   "EER", "engine")  # fmt: skip


def summary_rows(results: list[Results]) -> list[tuple[str, ...]]:
    """One row per model for a pull request or a paper: the operating point with its interval, and the curve."""
    rows = []
    for r in results:
        point, m = r.operating_point, r.metrics
        ci = m.curves.auc_ci
        auc = shown(m.auc) + (f" ({shown(ci.low, '.3f')}-{shown(ci.high, '.3f')})" if ci else "")
        ci = point.accuracy_ci
        accuracy = f"{percent(point.accuracy)} ({shown(100 * ci.low, '.1f')}-{shown(100 * ci.high, '.1f')})"
        listed = r.data.scored_on
        rows.append((
            r.name, listed, str(m.pairs), accuracy,
            "per fold" if point.threshold is None else shown(point.threshold, ".4g"), percent(point.tpr),
            percent(point.tnr), auc, percent(m.eer), r.model.engine,
        ))  # fmt: skip
    return rows


def _markdown(text: str) -> str:
    """A table cell that stays one cell of text: pipes, HTML and line breaks escaped."""
    escaped = text.replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")
    return " ".join(escaped.split())


def summary_markdown(results: list[Results]) -> str:
    lines = ["| " + " | ".join(SUMMARY_COLUMNS) + " |", "|" + "---|" * len(SUMMARY_COLUMNS)]
    lines += ["| " + " | ".join(_markdown(cell) for cell in row) + " |" for row in summary_rows(results)]
    return "\n".join(lines) + "\n"


LATEX_SPECIAL = {c: "\\" + c for c in "&%$#_{}"} | {"~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                                                     "\\": r"\textbackslash{}"}  # fmt: skip


def _latex(text: str) -> str:
    return "".join(LATEX_SPECIAL.get(character, character) for character in text)


def summary_latex(results: list[Results]) -> str:
    """A booktabs table: the same rows as the Markdown summary, escaped for LaTeX."""
    header = " & ".join(_latex(column) for column in SUMMARY_COLUMNS) + r" \\"
    body = [" & ".join(_latex(cell) for cell in row) + r" \\" for row in summary_rows(results)]
    spec = "l" * len(SUMMARY_COLUMNS)
    return "\n".join([rf"\begin{{tabular}}{{{spec}}}", r"\toprule", header, r"\midrule", *body, r"\bottomrule",
                      r"\end{tabular}", ""])  # fmt: skip
