"""harness publish: merged leaderboards, conflicts reported, names escaped, and the site in Chromium."""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import tempfile
import threading
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
from click.testing import CliRunner

from harness import hookimpl
from harness.cli import cli
from harness.methods import Method
from harness.plugins import make_plugin_manager
from harness.publish import publish_site
from harness.driver import run_plan
from harness.plan import plan_run
from harness.records import iter_records, read_record, record_files, record_path, write_record
from harness.testing import TINY_DATASET, tiny_run_settings

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS_ENV = "HARNESS_TEST_ARTIFACTS"  # folder for the screenshot; default: the test's tmp dir


class Prior(Method):
    """Predicts the tags that half of the valid split carries: learns nothing from train."""

    name = "prior"
    uses_labels = False

    def fit(self, train, valid, unlabeled, context):
        self.row = (valid.labels.mean(axis=0) >= 0.5).astype(np.uint8)

    def predict(self, texts):
        return np.tile(self.row, (len(texts), 1))


class Broken(Method):
    name = "broken"

    def fit(self, train, valid, unlabeled, context):
        raise RuntimeError("broken on purpose <b>")


class ExtraMethods:
    @hookimpl
    def register_methods(self, register):
        register(Prior)
        register(Broken)


def _run(folder: Path, methods: list[str], seeds: list[int], overrides: list[str] | None = None,
         label: str | None = None) -> Path:
    settings = tiny_run_settings(folder)
    pm = make_plugin_manager(autoload=False)
    pm.register_module(ExtraMethods(), name="publish-test-methods")
    plan = plan_run(pm, settings, methods, [TINY_DATASET], seeds, overrides=overrides, label=label)
    run_plan(pm, plan)
    return Path(settings.results_dir)


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> tuple[Path, Path]:
    """Two real results folders of the tiny dataset. Team a: nb, nb@smooth and the label-free
    prior at seeds 0, 1; team b: nb and a method that fails, at seed 2."""
    first = _run(tmp_path_factory.mktemp("team-a"), ["nb", "prior"], [0, 1])
    _run(first.parent, ["nb"], [0, 1], ["nb.alpha=5"], "smooth")
    second = _run(tmp_path_factory.mktemp("team-b"), ["nb", "broken"], [2])
    return first, second


def _copy(results_dir: Path, tmp_path: Path, name: str) -> Path:
    return Path(shutil.copytree(results_dir, tmp_path / name))


def _record_file(results_dir: Path, label: str, slice_name: str, seed: int) -> Path:
    return record_path(results_dir, TINY_DATASET, label, slice_name, seed)


def test_folders_merge_into_one_leaderboard_with_every_record_downloadable(results, tmp_path):
    first, second = results
    site = publish_site([first, second], tmp_path / "site")
    assert site.datasets == [TINY_DATASET] and site.conflicts == []
    assert site.n_records == len(record_files(first)) + len(record_files(second)) == 6 + 6 + 2 + 3 + 3
    page = (tmp_path / "site" / f"{TINY_DATASET}.html").read_text(encoding="utf-8")
    rows = page.split('id="leaderboard"')[1].split("<tbody>")[1].split("</tbody>")[0].split("<tr>")[1:]
    assert len(rows) == 9  # nb, nb@smooth, prior on slices 8, 16, all
    seeds = {(row.split("<td>")[1].split("<")[0].strip(), row.split("<td data-sort")[1].split(">")[1].split("<")[0]):
             row.count("download>seed") for row in rows}
    # nb: seeds 0, 1 from team a and 2 from team b; prior ran once per seed and is shown on every slice
    assert seeds == {(m, s): n for m, n in (("nb", 3), ("nb@smooth", 2), ("prior", 2)) for s in ("8", "16", "all")}
    links = [unquote(part.split('"', 1)[0]) for part in page.split('href="')[1:] if part.startswith("records/")]
    assert {link.split("/")[-1] for link in links if "/prior/" in link} == {"slice-none_seed-0.json", "slice-none_seed-1.json"}
    for link in set(links):
        copied = json.loads((tmp_path / "site" / link).read_text(encoding="utf-8"))
        source = first if link.startswith("records/1/") else second
        assert copied == read_record(source / "cells" / link.split("/", 2)[2]).to_json()
    # failed cells are listed below the table with their (escaped) error and record
    failed = page.split('id="failed"')[1]
    assert failed.count("broken on purpose &lt;b&gt;") == 3
    assert (tmp_path / "site" / "figures" / f"{TINY_DATASET}.png").read_bytes().startswith(b"\x89PNG")
    assert (tmp_path / "site" / "figures" / f"{TINY_DATASET}.svg").stat().st_size > 1000
    # what produced the numbers: versions, parameters, seeds, dates
    record = next(iter_records(first))
    for text in (record.environment["harness_version"], "&#34;alpha&#34;: 5.0", "0, 1, 2", record.finished_at[:10],
                 record.method.distribution):
        assert text in page, text
    index = (tmp_path / "site" / "index.html").read_text(encoding="utf-8")
    assert f'href="{TINY_DATASET}.html"' in index


def test_identical_records_in_two_folders_are_not_a_conflict(results, tmp_path):
    first, _ = results
    site = publish_site([first, _copy(first, tmp_path, "copy")], tmp_path / "site")
    assert site.conflicts == []
    assert site.n_records == 2 * len(record_files(first))


def test_conflicting_metrics_are_reported_and_the_first_folder_wins(results, tmp_path):
    first, _ = results
    other = _copy(first, tmp_path, "other")
    path = _record_file(other, "nb", "8", 0)
    record = read_record(path)
    original_micro = record.metrics.micro_f1
    record.metrics.micro_f1 = 0.123456
    write_record(path, record)

    site = publish_site([first, other], tmp_path / "site")
    (conflict,) = site.conflicts
    assert conflict.cell == (TINY_DATASET, "nb", "8", 0)
    assert conflict.kept.source == 1 and conflict.others[0][1] == "same cell key, different metrics"
    page = (tmp_path / "site" / f"{TINY_DATASET}.html").read_text(encoding="utf-8")
    assert 'id="conflicts"' in page and "0.1235" in page and f"{original_micro:.4f}" in page
    assert (tmp_path / "site" / "records" / "2" / path.relative_to(other / "cells")).exists()

    swapped = publish_site([other, first], tmp_path / "swapped")
    assert swapped.conflicts[0].kept.record.metrics.micro_f1 == 0.123456


def test_a_different_cell_key_under_the_same_label_is_a_conflict(results, tmp_path):
    first, _ = results
    other = _copy(first, tmp_path, "other")
    path = _record_file(other, "nb", "all", 1)
    record = read_record(path)
    record.key["params_hash"] = "0" * 16
    record.key_hash = "f" * 16
    write_record(path, record)
    (conflict,) = publish_site([first, other], tmp_path / "site").conflicts
    assert conflict.cell == (TINY_DATASET, "nb", "all", 1)
    assert "another cell key" in conflict.others[0][1]


def test_cli_warns_about_conflicts_and_rejects_bad_folders(results, tmp_path):
    first, second = results
    other = _copy(first, tmp_path, "other")
    path = _record_file(other, "nb@smooth", "16", 1)
    record = read_record(path)
    record.metrics.macro_f1 += 0.01
    write_record(path, record)
    runner = CliRunner()
    out = tmp_path / "site"
    result = runner.invoke(cli, ["publish", "--results", str(first), "--results", str(other), "--results", str(second), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "warning: conflicting records for dataset 'tiny' method 'nb@smooth' slice 16 seed 1" in result.output
    assert (out / "index.html").exists()
    # publishing again replaces the site it wrote
    assert runner.invoke(cli, ["publish", "--results", str(first), "--out", str(out)]).exit_code == 0
    assert not (out / "records" / "3").exists()

    missing = runner.invoke(cli, ["publish", "--results", str(tmp_path / "nope"), "--out", str(tmp_path / "x")])
    assert missing.exit_code == 2 and "no cell records" in missing.output
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    refused = runner.invoke(cli, ["publish", "--results", str(first), "--out", str(foreign)])
    assert refused.exit_code == 2 and "was not written by 'harness publish'" in refused.output
    assert (foreign / "notes.txt").read_text() == "mine"


HOSTILE_DATASET = 'tiny"><img src=x onerror=alert(1)>'
HOSTILE_LABEL = "nb@<script>alert('label')</script>"
HOSTILE_TAG = "<b onmouseover=alert(2)>docs</b>"


def _hostile_results(first: Path, folder: Path) -> Path:
    """Copies of real records whose dataset, method label and tag names carry HTML."""
    for record in iter_records(first):
        record.dataset.name = record.key["dataset"] = HOSTILE_DATASET
        record.dataset.tags = [HOSTILE_TAG if t == "docs" else t for t in record.dataset.tags]
        record.method.label = HOSTILE_LABEL
        record.method.params["note"] = "</pre><script>alert(3)</script>"
        write_record(record_path(folder, HOSTILE_DATASET, HOSTILE_LABEL, record.slice.name, record.seed), record)
    return folder


def test_names_from_datasets_labels_and_methods_are_escaped(results, tmp_path):
    hostile = _hostile_results(results[0], tmp_path / "hostile")
    site = publish_site([hostile], tmp_path / "site")
    pages = sorted((tmp_path / "site").glob("*.html"))
    assert len(pages) == 2 and all(p.parent == tmp_path / "site" for p in pages)  # a safe file name
    text = "\n".join(p.read_text(encoding="utf-8") for p in pages)
    for raw in ("<img src=x", "<script>alert", "<b onmouseover", "</pre><script>"):
        assert raw not in text, raw
    assert "&lt;img src=x onerror=alert(1)&gt;" in text
    assert "&lt;script&gt;alert(&#39;label&#39;)&lt;/script&gt;" in text
    assert "&lt;b onmouseover=alert(2)&gt;docs&lt;/b&gt;" in text
    assert site.datasets == [HOSTILE_DATASET]


def test_a_run_of_label_free_cells_only_publishes(tmp_path):
    """``--methods zeroshot`` alone: every cell is on the slice 'none', and the site shows it."""
    results_dir = _run(tmp_path / "zeroshot", ["zeroshot"], [0])
    out = tmp_path / "site"
    result = CliRunner().invoke(cli, ["publish", "--results", str(results_dir), "--out", str(out)])
    assert result.exit_code == 0, result.output
    page = (out / f"{TINY_DATASET}.html").read_text(encoding="utf-8")
    rows = page.split('id="leaderboard"')[1].split("<tbody>")[1].split("</tbody>")[0].split("<tr>")[1:]
    assert [row.split('<td data-sort="0">')[1].split("<")[0] for row in rows] == ["none"]
    assert "zeroshot" in page and 'id="summary-micro"' in page
    assert f'href="{TINY_DATASET}.html"' in (out / "index.html").read_text(encoding="utf-8")


def test_the_footer_names_each_folder_as_given_and_no_absolute_path(results, tmp_path, monkeypatch):
    first, second = results
    publish_site([first, second], tmp_path / "absolute")
    footer = (tmp_path / "absolute" / "index.html").read_text(encoding="utf-8").split("<footer>")[1]
    assert str(first.parent) not in footer and str(second.parent) not in footer
    assert "[1] results, [2] results." in footer
    monkeypatch.chdir(first.parent.parent)
    given = Path(first.parent.name) / "results"
    publish_site([given, second], tmp_path / "relative")
    footer = (tmp_path / "relative" / f"{TINY_DATASET}.html").read_text(encoding="utf-8").split("<footer>")[1]
    assert f"[1] {given.as_posix()}, [2] results." in footer and str(second.parent) not in footer


# ---------------------------------------------------------------- in a real browser

@pytest.fixture
def chrome(tmp_path):
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("Chromium not installed: apt-get install -y chromium chromium-driver")
    from selenium import webdriver  # in the test extra: with Chromium present, a missing selenium is an error
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1280,1400", f"--user-data-dir={tempfile.mkdtemp(dir=tmp_path)}"):
        options.add_argument(flag)
    # an explicit driver path: Selenium Manager never tries to download one
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def serve(tmp_path):
    servers = []

    def start(folder: Path) -> str:
        handler = functools.partial(_QuietHandler, directory=str(folder))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_site_in_chromium_shows_table_and_figure_and_sorts(results, tmp_path, chrome, serve):
    from selenium.webdriver.common.by import By

    hostile = _hostile_results(results[0], tmp_path / "hostile")
    site_dir = tmp_path / "site"
    publish_site([*results, hostile], site_dir)
    base = serve(site_dir)

    chrome.get(f"{base}/index.html")
    assert chrome.title == "Leaderboards"
    chrome.find_element(By.LINK_TEXT, TINY_DATASET).click()
    assert chrome.title == f"{TINY_DATASET} leaderboard"

    table = chrome.find_element(By.ID, "leaderboard")
    rows = table.find_elements(By.CSS_SELECTOR, "tbody tr")
    assert len(rows) == 9
    figure = chrome.find_element(By.ID, "figure")
    assert chrome.execute_script("return arguments[0].complete && arguments[0].naturalWidth", figure) > 500

    def column(index: int) -> list[str]:
        return [row.find_elements(By.TAG_NAME, "td")[index].get_attribute("data-sort") or
                row.find_elements(By.TAG_NAME, "td")[index].text
                for row in table.find_elements(By.CSS_SELECTOR, "tbody tr")]

    header = table.find_element(By.XPATH, ".//th[normalize-space()='micro F1']")
    header.click()
    ascending = [float(v) for v in column(4)]
    assert ascending == sorted(ascending) and len(set(ascending)) > 1
    assert header.get_attribute("aria-sort") == "ascending"
    header.click()
    assert [float(v) for v in column(4)] == sorted(ascending, reverse=True)
    table.find_element(By.XPATH, ".//th[normalize-space()='slice']").click()
    assert column(1) == ["0"] * 3 + ["1"] * 3 + ["2"] * 3  # 8 < 16 < all
    table.find_element(By.XPATH, ".//th[normalize-space()='method']").click()
    assert column(0) == sorted(column(0))

    artifacts = Path(os.environ.get(ARTIFACTS_ENV) or tmp_path)
    artifacts.mkdir(parents=True, exist_ok=True)
    chrome.save_screenshot(str(artifacts / "leaderboard.png"))
    assert (artifacts / "leaderboard.png").read_bytes().startswith(b"\x89PNG")

    # the summary: bold best and marks in every slice column, sortable, cost and labels needed
    summary = chrome.find_element(By.ID, "summary-micro")
    assert [h.text for h in summary.find_elements(By.CSS_SELECTOR, "thead th")] == ["method", "8", "16", "all"]
    assert {r.find_element(By.TAG_NAME, "td").text for r in summary.find_elements(By.CSS_SELECTOR, "tbody tr")} == {
        "nb", "nb@smooth", "prior"}
    for column_index in (1, 2, 3):
        cells = [r.find_elements(By.TAG_NAME, "td")[column_index] for r in summary.find_elements(By.CSS_SELECTOR, "tbody tr")]
        assert sum(len(c.find_elements(By.TAG_NAME, "strong")) for c in cells) == 1  # one best per column
    marks = [m.text for m in chrome.find_elements(By.CSS_SELECTOR, "#summary-micro .mark, #summary-macro .mark")]
    assert marks and set(marks) <= {"*", "?"}
    assert "not significantly worse than the best" in chrome.find_element(By.TAG_NAME, "body").text

    def summary_column(index: int) -> list[float]:
        return [float(r.find_elements(By.TAG_NAME, "td")[index].get_attribute("data-sort"))
                for r in summary.find_elements(By.CSS_SELECTOR, "tbody tr")]

    summary.find_element(By.XPATH, ".//th[normalize-space()='16']").click()
    assert summary_column(2) == sorted(summary_column(2))
    summary.find_element(By.XPATH, ".//th[normalize-space()='16']").click()
    assert summary_column(2) == sorted(summary_column(2), reverse=True)
    cost = chrome.find_element(By.ID, "summary-cost")
    assert " / " in cost.text and " MB" in cost.text
    assert "training issues needed" in chrome.find_element(By.ID, "summary-labels").text
    chrome.execute_script("document.getElementById('summary').scrollIntoView()")
    chrome.save_screenshot(str(artifacts / "summary.png"))

    # the index: seeds read as a count, and the aggregate over both datasets with mean ranks
    chrome.get(f"{base}/index.html")
    seeds = [r.find_elements(By.TAG_NAME, "td")[4].text for r in chrome.find_elements(By.CSS_SELECTOR, "#datasets tbody tr")]
    assert "3 seeds: 0, 1, 2" in seeds and "2 seeds: 0, 1" in seeds
    aggregate = chrome.find_element(By.ID, "aggregate-micro")
    rows = {r.find_element(By.TAG_NAME, "td").text: r.text for r in aggregate.find_elements(By.CSS_SELECTOR, "tbody tr")}
    # every method ran on one of the two datasets (the hostile copy renames them all): shown, not hidden
    assert set(rows) == {"nb", "nb@smooth", "prior", HOSTILE_LABEL}
    assert all(row.endswith(" 1/2") and "(1/2)" in row for row in rows.values())
    assert "mean rank" in aggregate.text
    assert chrome.execute_script("return document.getElementById('aggregate-figure').naturalWidth") > 300

    # hostile names show as text, run no script
    chrome.get(f"{base}/index.html")
    chrome.find_element(By.PARTIAL_LINK_TEXT, "onerror=alert(1)").click()
    assert HOSTILE_LABEL in chrome.find_element(By.ID, "leaderboard").text
    assert HOSTILE_TAG in chrome.find_element(By.TAG_NAME, "body").text
    assert chrome.find_elements(By.CSS_SELECTOR, "#leaderboard script, #leaderboard img, body > p b") == []
    assert HOSTILE_LABEL in chrome.find_element(By.ID, "summary-micro").text
    assert chrome.find_elements(By.CSS_SELECTOR, "table script, table img, table b") == []
