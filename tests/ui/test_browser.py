"""The MLflow web UI that mlgate serves, in headless Chromium, on SQLite and on PostgreSQL
(issue 22): each page shows what the mlflow client logged, and no call the page makes to the
server fails (status 400 or more, or no answer). Each test also names the calls its page
must make, so removing a route the UI uses fails here.

Chromium is Debian's (``.ci/run`` installs it), driven by Playwright's Python package through
``executable_path``; no browser is downloaded. Without it the tests skip, except in CI
(``CI=true``), where they fail. Every page is saved to ``$MLGATE_UI_SCREENSHOTS`` (default
``build/ui-screenshots``) as ``<backend>-<page>.png``.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from conftest import (
    MLGATE_START_TIMEOUT,
    ServerProcess,
    free_port,
    mlgate_command,
    start_server,
    stop_server,
)
from playwright.sync_api import Browser, Page, Request, Response, expect, sync_playwright
from ui_seed import (
    ADMIN,
    ADMIN_PASSWORD,
    MODEL_NAME,
    MODEL_RUN_NAME,
    PARAMS,
    REPORT_PATH,
    RUN_NAME,
    Team,
    Tracking,
    password,
    seed_teams,
    seed_tracking,
)

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
VIEWPORT = {"width": 1920, "height": 1080}
SHOW_TIMEOUT_MS = 20_000  # a fresh page parses a 4 MB script (and more) on a busy 2-core machine
QUIET_SECONDS = 0.5  # no request in flight this long: the page has fetched what it shows
SETTLE_TIMEOUT = 20.0
AJAX2, AJAX3 = "/ajax-api/2.0/mlflow", "/ajax-api/3.0/mlflow"
SHARED_WORKER = ".worker.js"  # the bundle's telemetry SharedWorker
# Without --auth there are no users, and stock answers the UI's who-am-I call with 404 too;
# the UI reads that as "no login" and hides the user menu.
NO_AUTH = frozenset({("GET", f"{AJAX2}/users/current", 404)})


def _chromium() -> str:
    """``$MLGATE_CHROMIUM``, else ``chromium`` on PATH; a skip without one (in CI a failure:
    .ci/run installs it, so a missing one is a broken set-up, not an optional part)."""
    path = os.environ.get("MLGATE_CHROMIUM") or shutil.which("chromium")
    if path and Path(path).is_file():
        return path
    where = f"at MLGATE_CHROMIUM={path}" if path else "on PATH"
    reason = f"no Chromium {where} (apt-get install chromium, or point MLGATE_CHROMIUM at one)"
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail(f"{reason}; .ci/run installs it in CI", pytrace=False)
    pytest.skip(reason)


@dataclass(frozen=True)
class Call:
    """One request the page sent to the server, as it ended: ``status`` 0 had no answer."""

    method: str
    path: str
    status: int
    detail: str  # the query string, or why no answer came

    def __str__(self) -> str:
        return f"{self.status} {self.method} {self.path} {self.detail}".rstrip()


class Tab:
    """A browser page on one server. It records every call the page sends there, so that a
    test can say what the page shows, then :meth:`done`: nothing failed."""

    def __init__(self, page: Page, base: str, shots: Path, label: str,
                 tolerated: frozenset[tuple[str, str, int]]) -> None:
        self.page, self.base, self.shots, self.label = page, base, shots, label
        self.tolerated = tolerated
        self.calls: list[Call] = []
        self.checked = 0  # calls[:checked] were checked by an earlier done()
        self.console: list[str] = []
        self._pending: dict[Request, None] = {}  # our calls sent and not yet ended
        page.on("request", self._sent)
        page.on("requestfinished", self._finished)
        page.on("requestfailed", self._failed)
        page.on("response", self._answered)
        page.on("console", lambda m: self.console.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda exc: self.console.append(f"uncaught: {exc}"))

    def _ours(self, request: Request) -> bool:
        return request.url.startswith(self.base + "/")

    def _sent(self, request: Request) -> None:
        if not self._ours(request):
            return
        if request.url.endswith(SHARED_WORKER):
            # Playwright reports a SharedWorker's script request but never its answer: fetch
            # it again, through the same route, to check it.
            answer = self.page.request.get(request.url)
            self.calls.append(Call("GET", urlsplit(request.url).path, answer.status,
                                   "(the UI's shared worker, fetched again)"))
            answer.dispose()
        else:
            self._pending[request] = None

    def _finished(self, request: Request) -> None:
        self._pending.pop(request, None)

    def _failed(self, request: Request) -> None:
        if self._pending.pop(request, False) is None:
            url = urlsplit(request.url)
            self.calls.append(Call(request.method, url.path, 0, request.failure or ""))

    def _answered(self, response: Response) -> None:
        # The answer ends the wait: its body may still stream, and the status is what counts.
        if self._pending.pop(response.request, False) is None:
            url = urlsplit(response.url)
            self.calls.append(Call(response.request.method, url.path, response.status,
                                   url.query))

    def open(self, fragment: str) -> None:
        """Load ``/#/<fragment>``; once the app runs, only the fragment changes."""
        self.page.goto(f"{self.base}/#/{fragment}")

    def shows(self, *texts: str, exact: bool = True) -> None:
        """Wait until each text is visible somewhere on the page."""
        for text in texts:
            found = self.page.get_by_text(text, exact=exact).filter(visible=True).first
            expect(found).to_be_visible(timeout=SHOW_TIMEOUT_MS)

    def lacks(self, *texts: str) -> None:
        """None of the texts is visible (call after :meth:`settle`: the data is in)."""
        for text in texts:
            expect(self.page.get_by_text(text).filter(visible=True)).to_have_count(0)

    def click(self, text: str) -> None:
        self.page.get_by_text(text, exact=True).filter(visible=True).first.click()

    def settle(self) -> None:
        """Wait until no request has been in flight for QUIET_SECONDS: the SPA fetches more
        after it renders, and a call still out when the test ends would go unchecked."""
        deadline = time.monotonic() + SETTLE_TIMEOUT
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < QUIET_SECONDS:
            if self._pending:
                quiet_since = time.monotonic()
            assert time.monotonic() < deadline, f"still out: {[r.url for r in self._pending]}"
            self.page.wait_for_timeout(50)  # lets Playwright deliver the page's events

    def done(self, shot: str, *made: str) -> None:
        """Settle, save a screenshot, and check the calls since the last ``done``: none
        failed, and among them is each of ``made``, ``"GET /path"`` (without the query) or
        ``"GET /prefix*"``."""
        self.settle()
        calls, self.checked = self.calls[self.checked:], len(self.calls)
        self.page.screenshot(path=self.shots / f"{self.label}-{shot}.png", full_page=True)
        for line in self.console:  # shown with the test's output when it fails
            print(f"console error on {shot}: {line}")
        self.console.clear()
        failed = [str(c) for c in calls if (c.status >= 400 or c.status == 0)
                  and (c.method, c.path, c.status) not in self.tolerated]
        assert not failed, f"calls that failed on {shot}: {failed}"
        sent = {f"{c.method} {c.path}" for c in calls}
        missing = [m for m in made if not any(
            s.startswith(m[:-1]) if m.endswith("*") else s == m for s in sent)]
        assert not missing, f"{shot} did not call {missing}; it called {sorted(sent)}"


# -- servers --------------------------------------------------------------------------


@dataclass(frozen=True)
class TrackingSite:
    url: str
    data: Tracking


@dataclass(frozen=True)
class TeamsSite:
    url: str
    teams: dict[str, Team]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One Chromium for the module: Playwright's event loop ends with it, before an
    asyncio test of another module starts its own."""
    executable = _chromium()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, headless=True)
        yield launched
        launched.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    folder = Path(os.environ.get("MLGATE_UI_SCREENSHOTS") or ROOT / "build" / "ui-screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@contextmanager
def _serving(request: pytest.FixtureRequest, backend: str, workdir: Path, *flags: str,
             env: dict[str, str] | None = None) -> Iterator[ServerProcess]:
    """``mlgate serve`` on a fresh SQLite file or PostgreSQL database, stopped (and the
    database dropped) afterwards."""
    pg = request.getfixturevalue("pg_databases") if backend == "postgres" else None
    dsn = pg.create("ui", migrated=False) if pg is not None else None
    port = free_port()
    server = start_server(
        mlgate_command(port, workdir, *flags, backend_store_uri=dsn),
        f"http://127.0.0.1:{port}", workdir, timeout=MLGATE_START_TIMEOUT, env=env,
        name="mlgate")
    try:
        yield server
    finally:
        stop_server(server)
        if pg is not None and dsn is not None:
            pg.drop(dsn)


@pytest.fixture(scope="module")
def tracking_site(request: pytest.FixtureRequest, backend: str,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrackingSite]:
    """mlgate without auth, holding :func:`ui_seed.seed_tracking`'s runs and model; with
    ``MLGATE_UI_URL``, the server already running there (an install to check by hand:
    ``pytest tests/ui -k "sqlite and not team"``)."""
    workdir = tmp_path_factory.mktemp(f"ui-{backend}")
    if url := os.environ.get("MLGATE_UI_URL"):
        yield TrackingSite(url.rstrip("/"), seed_tracking(url.rstrip("/"), workdir / "client"))
        return
    with _serving(request, backend, workdir) as server:
        yield TrackingSite(server.url, seed_tracking(server.url, workdir / "client"))


@pytest.fixture(scope="module")
def teams_site(request: pytest.FixtureRequest, backend: str,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[TeamsSite]:
    """mlgate with ``--auth`` and :func:`ui_seed.seed_teams`'s two teams."""
    workdir = tmp_path_factory.mktemp(f"ui-auth-{backend}")
    env = {"MLGATE_ADMIN_USERNAME": ADMIN, "MLGATE_ADMIN_PASSWORD": ADMIN_PASSWORD}
    with _serving(request, backend, workdir, "--auth", env=env) as server:
        yield TeamsSite(server.url, seed_teams(server.url))


TabFactory = Callable[..., Tab]


@pytest.fixture
def new_tab(browser: Browser, screenshots: Path, backend: str) -> Iterator[TabFactory]:
    """``new_tab(url, user=None)``: a page in a fresh browser context (no cache, no
    cookies), signed in as ``user`` with HTTP Basic when one is given."""
    contexts = []

    def open_tab(url: str, user: str | None = None) -> Tab:
        credentials = None if user is None else {"username": user, "password": password(user)}
        context = browser.new_context(viewport=VIEWPORT, http_credentials=credentials)
        contexts.append(context)
        label = backend if user is None else f"{backend}-auth"
        return Tab(context.new_page(), url, screenshots, label,
                   NO_AUTH if user is None else frozenset())

    yield open_tab
    for context in contexts:
        context.close()


@pytest.fixture
def tab(new_tab: TabFactory, tracking_site: TrackingSite) -> Tab:
    return new_tab(tracking_site.url)


# -- pages without auth -----------------------------------------------------------------


def test_home_and_experiment_list(tab: Tab, tracking_site: TrackingSite) -> None:
    name = tracking_site.data.experiment_name
    tab.open("")
    tab.shows("Welcome to MLflow", "Recent Experiments", name)
    tab.done("home", "GET /", f"GET {AJAX3}/server-info", f"GET {AJAX2}/experiments/search",
             f"GET {AJAX3}/assistant/config", f"GET {AJAX3}/assistant/providers",
             f"GET {AJAX2}/users/current")
    tab.open("experiments")
    tab.shows("Experiments", name, "Default")
    tab.done("experiments", f"GET {AJAX2}/experiments/search")


def test_experiment_run_table(tab: Tab, tracking_site: TrackingSite) -> None:
    data = tracking_site.data
    tab.open(f"experiments/{data.experiment_id}")
    tab.shows(data.experiment_name, "Training runs")
    tab.done("experiment", "POST /graphql", f"POST {AJAX3}/traces/metrics")
    tab.click("Training runs")  # the run table is a tab of the experiment's page
    tab.shows(RUN_NAME, "low accuracy run", "other model run", MODEL_RUN_NAME,
              "4 matching runs", MODEL_NAME)
    tab.done("runs", f"POST {AJAX2}/runs/search", f"POST {AJAX2}/experiments/search-datasets",
             f"POST {AJAX2}/logged-models/search", f"GET {AJAX2}/gateway-proxy")


def test_run_overview(tab: Tab, tracking_site: TrackingSite) -> None:
    data = tracking_site.data
    tab.open(f"experiments/{data.experiment_id}/runs/{data.run_id}")
    tab.shows(RUN_NAME, "Parameters (4)", "Metrics (2)", data.run_id)
    shown = {**{k: str(v) for k, v in PARAMS.items()}, "accuracy": "0.83", "loss": "0.35"}
    for key, value in shown.items():
        row = tab.page.get_by_role("row").filter(has_text=key)
        expect(row).to_have_count(1)
        expect(row).to_contain_text(value)
    tab.done("run", "POST /graphql", f"GET {AJAX2}/model-versions/search",
             f"POST {AJAX2}/runs/search")


def test_run_metric_charts(tab: Tab, tracking_site: TrackingSite) -> None:
    """The model-metrics tab draws one line per metric from get-history-bulk-interval."""
    data = tracking_site.data
    tab.open(f"experiments/{data.experiment_id}/runs/{data.run_id}/model-metrics")
    # Each chart's legend names its line: the run and the metric.
    tab.shows("accuracy", "loss", f"{RUN_NAME} (accuracy)", f"{RUN_NAME} (loss)")
    plots = tab.page.locator(".js-plotly-plot")
    expect(plots).to_have_count(2)
    for plot in plots.all():  # a line through the five logged steps: M x,y then four L x,y
        line = plot.locator(".scatterlayer .trace path.js-line").first
        expect(line).to_have_attribute("d", re.compile(r"M[^ML]+(L[^ML]+){4}"))
    tab.done("run-charts", f"GET {AJAX2}/metrics/get-history-bulk-interval")


def test_run_artifact_preview(tab: Tab, tracking_site: TrackingSite) -> None:
    data = tracking_site.data
    tab.open(f"experiments/{data.experiment_id}/runs/{data.run_id}/artifacts")
    tab.shows("Select a file to preview", "summary.json", "plots")
    folder, file = REPORT_PATH.split("/")
    tab.click(folder)
    tab.click(file)
    tab.shows(REPORT_PATH)
    tab.shows(f"mlflow-artifacts:/{data.experiment_id}/{data.run_id}/artifacts/{REPORT_PATH}",
              exact=False)
    tab.shows(*(line for line in data.report.splitlines() if line.strip()), exact=False)
    tab.done("run-artifacts", f"GET {AJAX2}/artifacts/list", "GET /get-artifact")


def test_registered_model_pages(tab: Tab, tracking_site: TrackingSite) -> None:
    tab.open("models")
    tab.shows("Registered Models", MODEL_NAME, "Version 1")
    # A fresh browser gets the new registry UI's announcement over the list first.
    tab.page.get_by_role("dialog").get_by_role("button", name="Try it now").click()
    tab.done("models", f"GET {AJAX2}/registered-models/search")
    tab.click(MODEL_NAME)
    tab.shows("Versions", "Version 1")
    tab.done("model", f"GET {AJAX2}/registered-models/get", f"GET {AJAX2}/model-versions/search")
    tab.click("Version 1")
    tab.shows("Source Run", MODEL_RUN_NAME, "Schema", "Inputs (1)", "Outputs (1)")
    tab.done("model-version", f"GET {AJAX2}/model-versions/get",
             "GET /model-versions/get-artifact", f"GET {AJAX2}/runs/get",
             f"GET {AJAX2}/logged-models/m-*")


def test_logged_model_page(tab: Tab, tracking_site: TrackingSite) -> None:
    data = tracking_site.data
    tab.open(f"experiments/{data.experiment_id}/models/{data.model_id}")
    tab.shows(data.model_id, "Ready", MODEL_RUN_NAME, MODEL_NAME)
    tab.done("logged-model", f"GET {AJAX2}/logged-models/{data.model_id}",
             f"GET {AJAX2}/runs/get")
    tab.click("Artifacts")
    tab.shows("MLmodel", "requirements.txt", "input_example.json")
    tab.click("MLmodel")
    tab.shows(f"model_id: {data.model_id}", exact=False)
    tab.done("logged-model-artifacts",
             f"GET {AJAX2}/logged-models/{data.model_id}/artifacts/directories",
             f"GET {AJAX2}/logged-models/{data.model_id}/artifacts/files")


def test_empty_genai_and_settings_pages(tab: Tab, tracking_site: TrackingSite) -> None:
    """The pages of what mlgate does not have (traces, evaluation datasets, prompts, MCP
    servers, AI gateway keys, webhooks) show their empty state, not an error."""
    exp = tracking_site.data.experiment_id
    pages = [
        (f"experiments/{exp}/traces", "Start tracing your LLM application", "traces",
         [f"POST {AJAX3}/traces/search", f"POST {AJAX3}/datasets/search"]),
        (f"experiments/{exp}/datasets", "Create an evaluation dataset", "datasets",
         [f"POST {AJAX3}/datasets/search"]),
        ("prompts", "Create your first prompt", "prompts",
         [f"GET {AJAX2}/registered-models/search"]),
        ("mcp-registry", "Register and catalog MCP servers for your organization.",
         "mcp-registry", [f"GET {AJAX3}/mcp-servers"]),
        ("settings/llm-connections", "No API keys created", "settings-llm-connections",
         [f"GET {AJAX3}/gateway/secrets/list", f"GET {AJAX3}/gateway/endpoints/list"]),
        ("settings/webhooks", "No webhooks configured.", "settings-webhooks",
         [f"GET {AJAX2}/webhooks"]),
    ]
    for fragment, text, shot, made in pages:
        tab.open(fragment)
        tab.shows(text, exact=False)
        tab.done(shot, *made)


# -- with auth: a member of one team ----------------------------------------------------


def test_team_member_sees_only_their_team(new_tab: TabFactory, teams_site: TeamsSite) -> None:
    mine, theirs = teams_site.teams["team-a"], teams_site.teams["team-b"]
    tab = new_tab(teams_site.url, mine.member)
    # With workspaces on, the home page asks for one: the member's teams, and default, which
    # is open to every user.
    tab.open("")
    tab.shows("Select a workspace to start experiments", "default", mine.name)
    tab.settle()
    tab.lacks(theirs.name)
    tab.done("home", f"GET {AJAX3}/workspaces", f"GET {AJAX2}/users/current",
             f"GET {AJAX3}/users/roles/list")

    ws = f"?workspace={mine.name}"
    tab.open(f"experiments{ws}")
    tab.shows(mine.experiment_name, mine.member)
    tab.settle()
    tab.lacks(theirs.experiment_name)
    selector = tab.page.locator('[data-component-id="workspace_selector"] [role=combobox]')
    expect(selector).to_contain_text(mine.name)
    selector.click()
    expect(tab.page.get_by_role("option")).to_have_text(["default", mine.name])
    tab.done("workspaces", f"GET {AJAX2}/experiments/search", f"GET {AJAX3}/workspaces")
    tab.page.keyboard.press("Escape")

    tab.open(f"experiments/{mine.experiment_id}/runs{ws}")
    tab.shows(mine.run_name, mine.model_run_name, "2 matching runs")
    tab.done("runs", f"POST {AJAX2}/runs/search", "POST /graphql")
    tab.open(f"experiments/{mine.experiment_id}/runs/{mine.run_id}/artifacts/notes.txt{ws}")
    tab.shows(mine.note)
    tab.done("run-artifacts", f"GET {AJAX2}/artifacts/list", "GET /get-artifact")
    tab.open(f"models{ws}")
    tab.shows(mine.model_name, "Version 1")
    tab.page.get_by_role("dialog").get_by_role("button", name="Try it now").click()
    tab.settle()
    tab.lacks(theirs.model_name)
    tab.done("models", f"GET {AJAX2}/registered-models/search")


def test_other_team_experiment_is_not_found(new_tab: TabFactory, teams_site: TeamsSite
                                            ) -> None:
    """Another team's experiment, opened by its URL, is answered as one that does not exist
    (404, "Experiment not found"): nothing of it shows, and no call fails otherwise."""
    mine, theirs = teams_site.teams["team-a"], teams_site.teams["team-b"]
    tab = new_tab(teams_site.url, mine.member)
    tab.tolerated = frozenset(
        (method, path, 404) for method, path in (
            ("POST", "/graphql"), ("GET", f"{AJAX2}/experiments/get"),
            ("POST", f"{AJAX2}/experiments/search-datasets")))
    tab.open(f"experiments/{theirs.experiment_id}/runs?workspace={theirs.name}")
    tab.shows("Experiment not found")
    tab.settle()
    tab.lacks(theirs.experiment_name, theirs.run_name)
    tab.done("other-team")
    assert any(c.status == 404 and c.path == "/graphql" for c in tab.calls), tab.calls
