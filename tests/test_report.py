from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from lfwbench.cli import main
from lfwbench.metrics import View2Folds
from lfwbench.report import Thumbnails, render_report, write_report
from lfwbench.results import write_results

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
INJECTED = "<script>window.__injected = 1</script>"


def with_injected_mistake(results):
    """Name the first pair's person with a script and make it the most confident mistake (first in the gallery)."""
    pair = results.pairs[0]
    pair.name1 = INJECTED
    pair.score = 0.999 if pair.label == 0 else 0.001
    pair.predicted = 1 - pair.label
    return results


def scrub(html: str) -> str:
    """Drop the header block holding date and versions, as the style guide asks of report tests."""
    return re.sub(r'<dl class="run-facts".*?</dl>', "", html, flags=re.S)


def test_report_has_every_section_and_escapes_names(make_results, lfw_tree: Path) -> None:
    html = render_report([with_injected_mistake(make_results(lfw_tree))], root=lfw_tree)
    for anchor in ("headline", "training", "roc", "model-1", "data", "models", "gallery"):
        assert f'id="{anchor}"' in html and f'href="#{anchor}"' in html
    for div in ("fig-training", "fig-roc", "fig-det", "fig-distribution-1", "fig-thresholds-1", "fig-confusion-1",
                "fig-calibration-1"):  # fmt: skip
        assert f'id="{div}"' in html
    assert INJECTED not in html and "&lt;script&gt;window.__injected = 1&lt;/script&gt;" in html
    assert html.count("data:image/jpeg;base64,") > 10
    at_validation = make_results(lfw_tree).metrics.at_threshold
    half_width = 100 * (at_validation.accuracy_ci.high - at_validation.accuracy_ci.low) / 2
    assert re.search(rf"±{half_width:.1f}\s+points", html) and "at 1,000 pairs" not in html
    assert "Most confident mistakes" in html and "Borderline pairs (score near 0.45)" in html
    chosen = "the threshold 0.45 chosen on pairsDevTrain.txt (validation people)"
    assert f"Verdicts at {chosen}. Green: right" in html and "at threshold 0.5" not in html
    assert f"TPR on 'same'</th><td>{100 * at_validation.tpr:.1f}%" in html
    assert "5 epochs in" in html and "70.8%" in html
    assert "32x32 RGB, the whole image, scaled to [0, 1] by the model" in html
    assert "n/a, needs ≥ 100 different-person pairs" in html  # 20 different pairs: no TAR at FAR 1%
    assert "AMD EPYC (avx512f avx2)" in html and "commit abc1234" in html and "lfwbench report --model m.keras" in html


def test_plotlyjs_inlined_once_and_no_external_request(make_results, lfw_tree: Path) -> None:
    html = render_report([make_results(lfw_tree)])
    assert html.count("plotly.js v") == 1  # the library's banner comment
    markup = re.sub(r"<script>.*?</script>", "", html, flags=re.S)  # plotly.js itself mentions URLs
    assert not re.search(r'(src|href)="(https?:)?//', markup)
    cdn = render_report([make_results(lfw_tree)], plotlyjs="cdn")
    assert "plotly.js v" not in cdn and 'src="https://cdn.plot.ly/plotly-' in cdn


def test_report_is_deterministic(make_results, lfw_tree: Path) -> None:
    first = render_report([make_results(lfw_tree)])
    second = render_report([make_results(lfw_tree)])
    assert scrub(first) == scrub(second)


def test_comparison_of_two_models(make_results, lfw_tree: Path) -> None:
    html = render_report([make_results(lfw_tree, name="model-a"), make_results(lfw_tree, name="model-b", seed=5)])
    assert 'id="comparison"' in html and "McNemar" in html
    assert "model-a vs model-b" in html and "Pairs on which the models disagree" in html
    assert html.count("(AUC ") >= 2


def test_no_history_is_said(make_results, lfw_tree: Path) -> None:
    results = make_results(lfw_tree)
    results.training = {}
    html = render_report([results])
    assert "No training history is stored" in html and 'id="fig-training"' not in html


def test_thousand_pair_report_stays_under_6_mb(make_results, lfw_tree: Path, tmp_path: Path) -> None:
    path = write_report(tmp_path / "big.html", [make_results(lfw_tree, pairs=1000)], root=lfw_tree)
    assert path.stat().st_size < 6_000_000
    assert [p.name for p in tmp_path.iterdir()] == ["big.html"]


REPORT_WITHOUT_TENSORFLOW = """
import sys
from lfwbench.cli import main
try:
    main(["report", "--results", sys.argv[1], "--out", sys.argv[2], "--fail-under", "0.99"])
except SystemExit as exit:
    print("exit", exit.code, "tensorflow" in sys.modules)
"""


def test_results_render_without_tensorflow_and_fail_under(make_results, lfw_tree: Path, tmp_path: Path) -> None:
    write_results(tmp_path / "r.json", make_results(lfw_tree))
    out = tmp_path / "out" / "report.html"
    run = subprocess.run([sys.executable, "-c", REPORT_WITHOUT_TENSORFLOW, str(tmp_path / "r.json"), str(out)],
                         capture_output=True, text=True)  # fmt: skip
    assert run.stdout.strip().endswith("exit 3 False"), run.stdout + run.stderr
    assert (
        "Below the gate: accuracy at the threshold 0.45 chosen on pairsDevTrain.txt" in run.stderr
        and "< --fail-under 0.99" in run.stderr
    )
    assert out.is_file() and out.with_suffix(".json").is_file()


def test_report_command_errors(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["report"])
    assert result.exit_code == 2, result.output
    assert "give --model, --embeddings, --scores, --results FILE or --crossval" in result.output
    (tmp_path / "r.json").write_text("{}")
    result = CliRunner().invoke(main, ["report", "--results", str(tmp_path / "r.json")])
    assert result.exit_code == 1 and "r.json: written by another lfwbench (schema None" in result.output
    (tmp_path / "r.json").write_text('{"schema_version": 1, "metrics": {"at_0.5": {}}}')  # before typed metrics
    result = CliRunner().invoke(main, ["report", "--results", str(tmp_path / "r.json")])
    assert result.exit_code == 1 and "(schema 1; this one reads 3); re-run lfwbench evaluate" in result.output
    (tmp_path / "r.json").write_text('{"schema_version": 3, "metrics": {"pairs": "many"}}')
    result = CliRunner().invoke(main, ["report", "--results", str(tmp_path / "r.json")])
    assert result.exit_code == 1 and "r.json: not a file of lfwbench evaluate" in result.output


@pytest.mark.browser
def test_report_in_headless_chromium(chromium, make_results, lfw_tree: Path, tmp_path: Path) -> None:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    results = with_injected_mistake(make_results(lfw_tree, pairs=200))
    page_path = write_report(
        tmp_path / "report.html", [results, make_results(lfw_tree, pairs=200, name="other", seed=3)], root=lfw_tree
    )
    errors: list[str] = []
    requests: list[str] = []
    context = chromium.new_context(offline=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("request", lambda request: requests.append(request.url))
    page.goto(page_path.as_uri())
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot .main-svg').length > 0")
    charts = page.eval_on_selector_all(
        ".plotly-graph-div", "ds => ds.map(d => d.querySelector('svg.main-svg') !== null)"
    )
    images = page.eval_on_selector_all("img", "is => is.map(i => i.complete && i.naturalWidth > 0)")
    drawn = page.evaluate("['fig-det', 'fig-calibration-1'].map(id => !!document.querySelector(`#${id} svg`))")
    facts = page.inner_text("#run-facts")
    injected = page.evaluate("window.__injected === undefined")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 800})
    try:  # Plotly redraws its charts to the new width after a resize event
        page.wait_for_function("document.documentElement.scrollWidth <= window.innerWidth + 1", timeout=5000)
        narrow = True
    except PlaywrightTimeout:
        narrow = False
    assert errors == []
    assert len(charts) >= 10 and all(charts) and drawn == [True, True]
    assert "AMD EPYC (avx512f avx2)" in facts and "lfwbench report --model m.keras" in facts
    assert len(images) > 20 and all(images)
    assert injected, "a person's name ran as a script"
    assert narrow, "the page scrolls sideways on a narrow screen"
    assert all(url.startswith(("file:", "data:")) for url in requests), requests


def hand_made_crossval(folds: int = 10, done: int = 10):
    from lfwbench.results import Crossval, FoldRow

    rows = [FoldRow(k, 600, 0.86 + 0.002 * k, 0.03, 0.9, 0.82, 0.94, 0.8, 0, 16.0, f"runs/cv/fold{k:02d}")
            for k in range(1, done + 1)]  # fmt: skip
    curve = {"fpr": [0.0, 0.1, 1.0], "tpr": [0.0, 0.7, 1.0], "threshold": [1.0, 0.05, 0.0]}
    return Crossval({"preset": "cpu", "seed": 0, "regime": "unrestricted"}, rows, folds,
                    {"mean": 0.87, "std": 0.006, "standard_error": 0.002}, curve, curve,
                    {"cpu": "AMD EPYC", "vector_instructions": "avx512f avx2", "cores": 2, "python": "3.11",
                     "os": "Linux"}, "2026-01-01T00:00:00+00:00")  # fmt: skip


def test_an_unfinished_crossval_says_so(tmp_path: Path) -> None:
    from lfwbench.report import write_crossval_report

    crossval = hand_made_crossval(done=3)
    assert (
        crossval.headline()
        == "View 2, unrestricted, no outside data: 0.8700 ± 0.0020 (û ± SE over 3 of 10 folds, unfinished)"
    )
    html = write_crossval_report(tmp_path / "cv.html", crossval, plotlyjs="cdn").read_text()
    assert "Unfinished:</strong> 3 of 10 folds" in html and html.count("<tr><td>") == 3


@pytest.mark.browser
def test_crossval_report_in_headless_chromium(chromium, make_results, lfw_tree: Path, tmp_path: Path) -> None:
    from lfwbench.report import write_crossval_report

    page_path = write_crossval_report(tmp_path / "cv.html", hand_made_crossval(), make_results(lfw_tree))
    errors: list[str] = []
    page = chromium.new_context(offline=True).new_page()
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(page_path.as_uri())
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot .main-svg').length >= 2")
    rows = page.eval_on_selector_all("#folds tbody tr", "rows => rows.map(r => r.cells[0].textContent)")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "crossval.png"), full_page=True)
    assert errors == [] and rows == [str(k) for k in range(1, 11)]


@pytest.mark.parametrize(
    "extra, code",
    [
        (["--fail-under", "0.5"], 0),
        # between accuracy at 0.5 and at the validation threshold: the operating point is what is gated
        (["--fail-under", "GATE"], 3),
        (["--fail-under", "0.99", "--gate", "auc"], 3),
        (["--fail-under", "0.5", "--gate", "view2"], 1),  # not a View 2 evaluation: an error, not a verdict
        (["--fail-under", "1.5"], 2),
        (["--gate", "loss"], 2),
    ],
)
def test_the_gate_exits_3_below_the_operating_point_and_keeps_1_and_2_for_errors(
    make_results, lfw_tree: Path, tmp_path: Path, extra: list[str], code: int
) -> None:
    results = make_results(lfw_tree)
    at_threshold, at_half = results.operating_point.accuracy, results.metrics.at_half.accuracy
    assert at_threshold < at_half  # the hand-made results differ at the two thresholds
    write_results(tmp_path / "r.json", results)
    extra = [str((at_threshold + at_half) / 2) if value == "GATE" else value for value in extra]
    args = ["report", "--results", str(tmp_path / "r.json"), "--out", str(tmp_path / "page.html"), "--plotlyjs", "cdn"]
    result = CliRunner().invoke(main, args + extra)
    assert result.exit_code == code, result.output


def test_mixed_view1_and_view2_results_render_each_with_its_list(make_results, lfw_tree: Path) -> None:
    view2 = make_results(lfw_tree, name="view2-model")
    view2.data = replace(view2.data, pair_list_name="pairs.txt", folds=10, pair_list_md5="def")
    view2.metrics.view2 = View2Folds([0.8] * 10, [0.5] * 10, 0.8, 0.01, 0.003)
    html = render_report([view2, make_results(lfw_tree)], plotlyjs="cdn")
    assert (
        "view2-model on <strong>pairs.txt</strong>" in html and "model-a on <strong>pairsDevTest.txt</strong>" in html
    )
    assert "not a View 2 list" in html and "scored on different pairs: not compared" in html


def test_disagreements_are_ranked_by_spread_balanced_and_show_every_verdict(make_results, lfw_tree: Path) -> None:
    from lfwbench.report import disagreement_cards

    first, second = make_results(lfw_tree, pairs=40), make_results(lfw_tree, pairs=40, name="other", seed=3)
    thresholds = [r.operating_point.threshold for r in (first, second)]

    def spread(k: int) -> float:
        return abs(first.pairs[k].score - thresholds[0] - (second.pairs[k].score - thresholds[1]))

    split = [k for k in range(40) if first.pairs[k].predicted != second.pairs[k].predicted]
    widest = {label: max((k for k in split if first.pairs[k].label == label), key=spread) for label in (0, 1)}
    cards = disagreement_cards([first, second], 6, Thumbnails(None))
    assert [card.pair for card in cards[:2]] == [first.pairs[widest[1]], first.pairs[widest[0]]]  # same, different
    assert all("model-a: " in card.note and "other: " in card.note and "✓" in card.note for card in cards)


def test_summary_tables_for_a_pull_request_and_a_paper(make_results, lfw_tree: Path, tmp_path: Path) -> None:
    results = make_results(lfw_tree, name="cpu_seed0 & co")
    write_results(tmp_path / "r.json", results)
    args = ["report", "--results", tmp_path / "r.json", "--out", tmp_path / "page.html", "--plotlyjs", "cdn",
            "--summary", tmp_path / "table.md", "--latex", tmp_path / "table.tex"]  # fmt: skip
    result = CliRunner().invoke(main, [str(arg) for arg in args])
    assert result.exit_code == 0, result.output
    markdown = (tmp_path / "table.md").read_text().splitlines()
    point = results.operating_point
    assert markdown[0].startswith("| model | scored on | pairs | accuracy (95% CI) | threshold")
    assert markdown[2].startswith(f"| cpu_seed0 & co | pairsDevTest.txt | 40 | {100 * point.accuracy:.1f}% (")
    latex = (tmp_path / "table.tex").read_text()
    assert r"cpu\_seed0 \& co & pairsDevTest.txt & 40 & " in latex and r"accuracy (95\% CI)" in latex
    assert latex.startswith(r"\begin{tabular}") and r"\bottomrule" in latex


def test_a_list_of_one_same_and_one_different_pair_reports_without_intervals(make_results, lfw_tree: Path) -> None:
    html = render_report([make_results(lfw_tree, pairs=2)], plotlyjs="cdn")
    assert "no bootstrap interval: fewer than two pairs of a class" in html


def test_an_undefined_figure_is_stored_as_null_and_shown_as_n_a(make_results, lfw_tree: Path, tmp_path: Path) -> None:
    import json
    import math

    from lfwbench.results import read_results

    results = make_results(lfw_tree)
    results.metrics.auc = math.nan  # as a list of one class leaves it
    write_results(tmp_path / "r.json", results)
    text = (tmp_path / "r.json").read_text()
    json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} written: not standard JSON"))
    assert '"auc": null' in text
    assert math.isnan(read_results(tmp_path / "r.json").metrics.auc)
    args = ["report", "--results", tmp_path / "r.json", "--out", tmp_path / "page.html", "--plotlyjs", "cdn",
            "--summary", tmp_path / "table.md"]  # fmt: skip
    result = CliRunner().invoke(main, [str(arg) for arg in args])
    assert result.exit_code == 0, result.output
    assert "| n/a" in (tmp_path / "table.md").read_text() and "nan" not in (tmp_path / "table.md").read_text().lower()
    assert '<td>n/a <span class="ci">' in (tmp_path / "page.html").read_text()  # the AUC cell
