"""The dashboard in a real browser (Debian's headless Chromium, driven by Selenium through
Debian's chromedriver) beside a real loop on the dev cluster: the list shows the running
workflow, its page draws every task of its DAG, and approving from the page lets the task after
the approval run with the value given on the page; ``reconciler serve`` on the same store shows
each job's output.

One Chromium serves the whole module. The screenshot of the workflow page waiting for its
approval (a value typed into its form) goes to $RECONCILER_DASHBOARD_SCREENSHOT when set (the
README's docs/dashboard.png is made so), else into the test's temporary folder.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from tests.integration.gitops_world import ROOT, Loop, PlanRepo, terminate, unique, wait_until

pytestmark = pytest.mark.slurm

T = TypeVar("T")
TOKEN = "approve-from-the-page"


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    driver_path = shutil.which("chromedriver")
    if driver_path is None or shutil.which("chromium") is None:
        pytest.fail("the dashboard's browser test needs Debian's chromium and chromium-driver "
                    "(scripts/test installs them when run as root)")
    options = Options()
    options.binary_location = shutil.which("chromium") or ""
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1280,860"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(20)
    yield driver
    driver.quit()


def plan(name: str) -> str:
    """prepare -> tiles (an array of 3) -> review (an approval with a parameter) -> render."""
    return f"""\
apiVersion: hpc.reconciler.dev/v1alpha1
kind: Workflow
metadata:
  name: {name}
  labels: {{team: imaging, sample: slide-7}}
spec:
  defaults:
    resources: {{partition: debug, time: "00:05:00", memory: 20M}}
  tasks:
    - name: prepare
      script: echo prepared
    - name: tiles
      dependsOn: [prepare]
      array: {{count: 3}}
      script: echo tile $SLURM_ARRAY_TASK_ID
    - name: review
      type: approval
      dependsOn: [tiles]
      parameters:
        - {{name: gamma, type: number, default: 1.0, description: the contrast the tiles are rendered with}}
    - name: render
      dependsOn: [review]
      # Succeeds only with the value given on the page, in its script and in its environment.
      script: test "{{{{ approvals.review.gamma }}}}" = 1.2 && test "$APPROVAL_REVIEW_GAMMA" = 1.2
"""


def retried(action: Callable[[], T]) -> T:
    """``action``'s result, done again when the page's refresh replaced an element meanwhile."""
    for _ in range(5):
        try:
            return action()
        except StaleElementReferenceException:
            continue
    return action()


def page_state(driver: webdriver.Chrome, script: str) -> Any:
    """What ``script`` reads from the page, in one step (the page may refresh between two)."""
    return driver.execute_script(script)


ROWS = "return [...document.querySelectorAll('tr.workflow')].map(r => [r.dataset.workflow, r.className, " \
       "r.querySelector('.phase').textContent])"
NODES = "return [...document.querySelectorAll('svg.dag g.node')].map(g => [g.dataset.task, g.dataset.phase, " \
        "g.textContent])"


def test_the_dashboard_shows_the_workflow_and_approves_from_the_page(world: tuple[PlanRepo, Loop], tmp_path: Path,
                                                                    browser: webdriver.Chrome):
    repo, loop = world
    name = unique("dashboard")
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    loop.interval = 0.5
    loop.extra = ("--dashboard-port", "0", "--dashboard-allow-approve", "--dashboard-token-file", str(token_file))
    repo.write("plans/tile.yaml", plan(name))
    repo.push("a tile workflow that needs a review")
    loop.start()
    found = wait_until(lambda: re.search(r"dashboard on (http://127\.0\.0\.1:\d+/)", loop.log.read_text()),
                       timeout=30, what="the dashboard's address in the loop's log")
    url = found.group(1)

    # The list, filtered by the workflow's labels, shows it once the loop has submitted its first job.
    def listed_running() -> list[Any]:
        browser.get(url + "?selector=team%3Dimaging%2Csample%3Dslide-7")
        rows = page_state(browser, ROWS)
        return rows if rows and rows[0][2] == "Running" else []

    rows = wait_until(listed_running, timeout=60, what="the workflow listed as Running", every=0.5)
    assert [r[0] for r in rows] == [f"default/{name}"]
    browser.get(url + "?selector=team%3Dgenomics")
    assert page_state(browser, ROWS) == []

    loop.wait_for(name, lambda s: s["tasks"]["review"]["phase"] == "AwaitingApproval", what="awaiting approval")
    browser.get(url)
    (row,) = page_state(browser, ROWS)
    assert "attention" in row[1], row
    retried(lambda: browser.find_element(By.LINK_TEXT, name).click())

    # The DAG: every task a node, the array as one node with its element counts.
    nodes = wait_until(lambda: page_state(browser, NODES), timeout=10, what="the DAG drawn")
    assert [(task, phase) for task, phase, _ in nodes] == [
        ("prepare", "Succeeded"), ("tiles", "Succeeded"), ("review", "AwaitingApproval"), ("render", "Waiting")]
    assert "3/3" in nodes[1][2]

    # Approving from the page: a value and the token typed into the form (a field holding text
    # keeps the page from refreshing under the typing), then the button.
    form = 'form.approval[data-task="review"] '
    retried(lambda: browser.find_element(By.CSS_SELECTOR, form + 'input[name="value.gamma"]').send_keys("1.2"))
    shot = Path(os.environ.get("RECONCILER_DASHBOARD_SCREENSHOT") or tmp_path / "dashboard.png")
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 0
    retried(lambda: browser.find_element(By.CSS_SELECTOR, form + 'input[name="token"]').send_keys(TOKEN))
    retried(lambda: browser.find_element(By.CSS_SELECTOR, form + "button").click())
    wait_until(lambda: "task review approved with gamma=1.2" in browser.page_source, timeout=10,
               what="the page saying approved")

    status = loop.wait_for_phase(name, "Succeeded", timeout=60)
    assert status["tasks"]["render"]["phase"] == "Succeeded"
    assert "via the dashboard" in loop.cli("describe", "workflow", name).stdout

    # reconciler serve on the same store, with the manifests that say how to reach the cluster:
    # each job's output is a link to its tail, read through the cluster's transport.
    served = subprocess.Popen([sys.executable, "-m", "reconciler", "serve", "--port", "0", "--state-dir",
                               str(loop.state_dir), "--source", str(repo.work)], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    try:
        assert served.stdout is not None
        serve_url = re.search(r"http://127\.0\.0\.1:\d+/", served.stdout.readline())
        assert serve_url, "reconciler serve named no address"
        for task, output in (("prepare", "prepared"), ("tiles", "tile 0")):
            browser.get(f"{serve_url.group(0)}workflows/default/{name}")
            retried(lambda task=task: browser.find_element(By.CSS_SELECTOR, f'tr[data-task="{task}"] a.logs').click())
            text = wait_until(lambda: page_state(browser, "return document.querySelector('pre.output')?.textContent"),
                              timeout=10, what=f"the output of {task}")
            assert output in text, text
    finally:
        terminate(served)
