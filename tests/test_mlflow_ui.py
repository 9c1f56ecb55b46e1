"""MLflow's UI opens on what seqexp ran: model-training experiments, a run's page, and a sweep's page
with its runs listed and their validation metrics charted; the browser test opens that page."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from sizes import TINY

from seqexp.tracking.runs import EXPERIMENT_KIND_TAG, MODEL_TRAINING, TAG_SWEEP_ID, experiment_id
from seqexp.tracking.ui import (
    LOCAL_UI,
    NOTE,
    SHARED_VIEW_TAG,
    describe_run,
    run_page,
    sweep_view,
    ui_address,
)

CELLS = ("rnn", "gru", "lstm")
BROWSER_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1600,1000",
]
PAGE_TIMEOUT_S = 120.0
"""How long the UI's JavaScript app may take to show the runs and charts (a loaded 2-core machine)."""


def printed_urls(text: str) -> list[str]:
    return re.findall(r"https?://\S+", text)


def test_a_run_is_recorded_in_a_model_training_experiment_and_its_page_is_printed(
    capsys, run_seqexp, records
) -> None:
    run_seqexp(*TINY)

    experiment = records.get_experiment_by_name("adding")
    assert experiment.tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING
    [run] = records.search_runs([experiment.experiment_id])
    page = f"{LOCAL_UI}/#/experiments/{experiment.experiment_id}/runs/{run.info.run_id}"
    assert f"{page}?workflowType=machine_learning" in printed_urls(capsys.readouterr().out)


def test_an_experiment_made_without_a_kind_is_marked_model_training(outputs, records) -> None:
    old = records.create_experiment("old")

    assert experiment_id(records, "old", outputs) == old
    assert records.get_experiment(old).tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING


def test_a_parent_runs_page_shows_its_result_table_and_headline_numbers(outputs, records) -> None:
    run = records.create_run(records.create_experiment("adding"), run_name="compare-abc").info.run_id
    table = "| config | test/mse |\n|:--|:--|\n| cell=gru | 0.004 ± 0.001 |\n"

    describe_run(records, run, table, {"test_mse/cell_gru": 0.004, "test_mse/cell_rnn": math.nan})

    recorded = records.get_run(run).data
    assert recorded.tags[NOTE] == table  # the UI renders it, as markdown, at the top of the page
    assert recorded.metrics == {"test_mse/cell_gru": 0.004}  # no seed finished for rnn: no number

    describe_run(records, run, "| row |\n" * 2000, {})  # longer than MLflow keeps in a tag
    note = records.get_run(run).data.tags[NOTE]
    assert len(note) <= 8000 and note.startswith("| row |") and "cut here" in note


def test_a_tracking_server_serves_the_pages() -> None:
    server = "http://tracking.example:8080/"
    assert ui_address(server) == "http://tracking.example:8080"
    assert run_page(server, "3", "abc").startswith("http://tracking.example:8080/#/experiments/3/runs/abc?")
    assert ui_address("sqlite:////tmp/mlflow.db") == LOCAL_UI


def test_a_sweeps_view_groups_by_the_swept_options_that_vary_and_charts_validation(records) -> None:
    experiment = records.create_experiment("sweep")
    runs = []
    for cell in ("rnn", "gru"):
        for seed in (0, 1):
            run = records.create_run(experiment, tags={TAG_SWEEP_ID: "parent"})
            for key, value in {"cell": cell, "seed": seed, "task.seq_len": 6}.items():
                records.log_param(run.info.run_id, key, value)
            runs.append(records.get_run(run.info.run_id))

    view = sweep_view("parent", runs, ["cell", "seed", "task.seq_len"])
    assert view["searchFilter"] == f"tags.`{TAG_SWEEP_ID}` = 'parent'"
    assert view["groupBy"]["groupByKeys"] == [{"mode": "param", "groupByData": "cell"}]  # seeds averaged
    assert view["useGroupedValuesInCharts"] is True
    assert view["chartsSearchFilter"] == "val/"

    seeds_only = sweep_view("parent", runs[:2], ["seed"])  # nothing to compare: a line per run
    assert seeds_only["groupBy"]["groupByKeys"] == [{"mode": "tag", "groupByData": TAG_SWEEP_ID}]
    assert seeds_only["useGroupedValuesInCharts"] is False


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def mlflow_ui(outputs: Path, tmp_path: Path) -> Iterator[str]:
    """``mlflow ui`` on the outputs dir's store, on a free port of 127.0.0.1: its address."""
    port = free_port()
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    command = [
        str(mlflow_cli) if mlflow_cli.exists() else "mlflow",
        "ui",
        "--backend-store-uri",
        f"sqlite:///{outputs.resolve() / 'mlflow.db'}",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    log = (tmp_path / "mlflow_ui.log").open("w")
    quiet = os.environ | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no job workers: the UI alone
    server = subprocess.Popen(
        command, cwd=tmp_path, env=quiet, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    address = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{address}/health", timeout=2):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        f"mlflow ui did not start: {(tmp_path / 'mlflow_ui.log').read_text()[-2000:]}"
                    ) from None
                time.sleep(0.5)
        yield address
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # its own session: the server and its workers
        server.wait(timeout=30)
        log.close()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[object]:
    """Debian's headless Chromium, driven by its chromedriver (``apt-get install chromium
    chromium-driver``), with a fresh profile."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver, "the browser test needs chromium and chromium-driver on PATH"
    options = webdriver.ChromeOptions()
    for flag in [*BROWSER_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        options.add_argument(flag)
    options.binary_location = chromium
    session = webdriver.Chrome(options=options, service=Service(driver))
    try:
        yield session
    finally:
        session.quit()


@pytest.mark.browser
def test_the_printed_sweep_page_shows_its_runs_and_charts_their_validation_metrics(
    capsys, mlflow_ui, browser, run_seqexp, records
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    run_seqexp("-m", *TINY, f"cell={','.join(CELLS)}")

    printed = [url for url in printed_urls(capsys.readouterr().out) if "viewStateShareKey" in url]
    [page] = printed
    assert page.startswith(f"{LOCAL_UI}/#/experiments/")  # where `mlflow ui` serves, by default
    experiment = records.get_experiment_by_name("adding")
    assert experiment.tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING
    [view] = [json.loads(v) for k, v in experiment.tags.items() if k.startswith(SHARED_VIEW_TAG)]
    assert view["groupBy"]["groupByKeys"] == [{"mode": "param", "groupByData": "cell"}]
    runs = records.search_runs([experiment.experiment_id], f"tags.`{TAG_SWEEP_ID}` != ''")
    names = {run.info.run_name for run in runs}
    assert {name.split("-")[0] for name in names} == set(CELLS)

    browser.get(page.replace(LOCAL_UI, mlflow_ui))  # this test's `mlflow ui` runs on a free port
    charts = '[data-testid="experiment-view-compare-runs-chart-area"]'

    def shown(session) -> bool:
        body = session.find_element(By.TAG_NAME, "body").text
        areas = session.find_elements(By.CSS_SELECTOR, charts)
        return all(name in body for name in names) and any("val/mse" in area.text for area in areas)

    try:
        WebDriverWait(browser, PAGE_TIMEOUT_S, poll_frequency=1).until(shown)
    except Exception as error:
        body = browser.find_element(By.TAG_NAME, "body").text
        raise AssertionError(f"the page at {browser.current_url} shows:\n{body[:3000]}") from error
    [area] = browser.find_elements(By.CSS_SELECTOR, charts)
    titles = [line for line in area.text.splitlines() if line.startswith(("val/", "train/", "grad/"))]
    assert titles and all(title.startswith("val/") for title in titles)  # the validation charts only
    plots = area.find_elements(By.CSS_SELECTOR, "svg")
    assert plots, "no chart was drawn"
    legend = area.text
    assert all(f"{cell} (val/mse)" in legend for cell in CELLS)  # a line per cell in the val/mse chart
