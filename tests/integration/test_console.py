"""The web console, end to end: a real headless Chromium on the local stack's API.

What a person does and sees: upload a folder from the page and watch the job turn OK (then find
the files in the archive with the right digests), a bundle with a wrong digest shown FAILED with
the file named, an administrator failing a stuck job from the page, and a page that shows nothing
but a sign-in prompt without a token. The JSON endpoints it reads are checked here too.

Screenshots of the jobs table and of a failed job's page are taken on the way; set
INGEST_CONSOLE_SCREENSHOTS=docs to keep them (the README shows the committed ones).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from minio import Minio
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from ingest.kube import JobStore
from ingest.local.launcher import Stack, http_ok, stop_pid
from ingest.local.objectstore import free_port
from tests.integration import browser as chromium
from tests.integration.bundles import TRANSACTION, bundle, files_entry, tar_bytes
from tests.integration.helpers import big_bundle, upload, wait_complete, wait_for, worker_pids

pytestmark = pytest.mark.stack
ALICE, ROOT = "alice-console-token", "root-console-token"


@pytest.fixture(scope="module")
def page() -> Iterator[WebDriver]:
    driver = chromium.start()
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def secured(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second API replica of the stack with tokens on: alice is a user, root an administrator."""
    folder = tmp_path_factory.mktemp("console-auth")
    tokens = folder / "tokens"
    tokens.write_text(f"{ALICE} alice\n{ROOT} root\n")
    port = free_port()
    env = stack.process_env("api") | {"INGEST_API_PORT": str(port), "INGEST_AUTH_TOKENS_FILE": str(tokens),
                                      "INGEST_ADMIN_USERS": "root"}
    with open(folder / "api.log", "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "ingest.api"], env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while not http_ok(f"{url}/readyz"):
        assert process.poll() is None and time.monotonic() < deadline, (folder / "api.log").read_text()
        time.sleep(0.1)
    yield url
    stop_pid(process.pid)


def screenshot(driver: WebDriver, name: str, tmp_path: Path) -> None:
    driver.save_screenshot(str(tmp_path / name))
    keep = os.environ.get("INGEST_CONSOLE_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / name, Path(keep) / name)


def wait(driver: WebDriver, condition: Any, timeout: float = 60, what: str = "the page") -> Any:
    waiting = WebDriverWait(driver, timeout, poll_frequency=0.2)
    return waiting.until(lambda d: condition(d), message=f"waiting for {what}")


def job_row(driver: WebDriver, job_id: int) -> list[Any]:
    return driver.find_elements(By.CSS_SELECTOR, f"#jobs-table tr[data-job-id='{job_id}']")


def sign_in(driver: WebDriver, token: str) -> None:
    wait(driver, lambda d: d.find_element(By.ID, "login").is_displayed(), what="the sign-in prompt")
    driver.find_element(By.ID, "token").send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "#login-form button[type=submit]").click()


def open_console(driver: WebDriver, url: str, route: str) -> None:
    """A fresh tab's view: nothing remembered from an earlier test."""
    driver.get(f"{url}/ui/")
    driver.execute_script("sessionStorage.clear()")
    driver.get(f"{url}/ui/#{route}")
    driver.refresh()


def follow_upload(driver: WebDriver, timeout: float = 120) -> tuple[int, str]:
    line = wait(driver, lambda d: (lambda e: e if e.get_attribute("data-complete") == "true" else None)(
        d.find_element(By.ID, "upload-job")), timeout, "the uploaded job to complete")
    return int(line.get_attribute("data-job-id")), line.get_attribute("data-state")


# -- the pages -------------------------------------------------------------------------------------


def test_upload_a_folder_from_the_page(page: WebDriver, stack: Stack, s3: Minio, tmp_path: Path) -> None:
    folder = tmp_path / "run-42"
    files = {"notes.txt": b"first light\n", "spectra/größe-α.csv": b"1,2,3\n" * 1000,
             "spectra/raw.bin": os.urandom(300_000)}
    for relative, data in files.items():
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_bytes(data)
    open_console(page, stack.api_url, "/upload")
    wait(page, lambda d: d.find_element(By.ID, "upload").is_displayed(), what="the upload page")
    page.find_element(By.ID, "project").send_keys("1234a")
    page.find_element(By.ID, "submitter").send_keys("10")
    page.find_element(By.ID, "keyvalues").send_keys("Tag=console")
    page.find_element(By.ID, "folder").send_keys(str(folder))
    wait(page, lambda d: "3 files" in d.find_element(By.ID, "chosen").text, what="the folder to be read")
    page.find_element(By.ID, "upload-button").click()
    job_id, state = follow_upload(page)
    assert state == "OK", page.find_element(By.ID, "upload-status").text
    offers_tus = "1.0.0" in httpx.options(f"{stack.api_url}/uploads/").headers.get("Tus-Version", "")
    assert page.find_element(By.ID, "upload-job").get_attribute("data-protocol") == ("tus" if offers_tus else "post")
    assert page.find_element(By.ID, "upload-progress").get_attribute("value") == "100"
    assert "100 %" in page.find_element(By.ID, "upload-percent").text

    # The archive has every file, with the digest computed in the browser (checked by the worker).
    stored = {item.object_name: s3.stat_object("ingest-archive", item.object_name)
              for item in s3.list_objects("ingest-archive", prefix=f"{job_id}/", recursive=True)}
    by_digest = {stat.metadata.get("x-amz-meta-hashsum"): stat.size for stat in stored.values()}
    for data in files.values():
        assert by_digest.get(hashlib.sha1(data).hexdigest()) == len(data)

    # The job's page lists the archived files with size and digest.
    page.get(f"{stack.api_url}/ui/#/job/{job_id}")
    rows = wait(page, lambda d: d.find_elements(By.CSS_SELECTOR, "#job-files tbody tr"), what="the archived files")
    shown = {row.get_attribute("data-path"): row.text for row in rows}
    assert set(shown) == {f"data/{relative}" for relative in files}
    for relative, data in files.items():
        row = shown[f"data/{relative}"]
        assert hashlib.sha1(data).hexdigest() in row and str(len(data)) in row
    events = page.find_element(By.ID, "job-events").text
    assert "Staged" in events and "Completed" in events


def test_a_wrong_digest_shows_failed_and_names_the_file(page: WebDriver, stack: Stack, tmp_path: Path) -> None:
    good, bad = b"fine\n", b"these bytes do not match\n"
    metadata = [*TRANSACTION, files_entry("good.txt", "run", good),
                files_entry("wrong.txt", "run", bad, hashsum=hashlib.sha1(b"something else").hexdigest())]
    tar = tmp_path / "wrong-digest.tar"
    tar.write_bytes(tar_bytes([("data/run/good.txt", good), ("data/run/wrong.txt", bad),
                               ("metadata.txt", json.dumps(metadata).encode())]))
    open_console(page, stack.api_url, "/upload")
    wait(page, lambda d: d.find_element(By.ID, "upload").is_displayed(), what="the upload page")
    page.find_element(By.ID, "tarfile").send_keys(str(tar))
    page.find_element(By.ID, "upload-button").click()
    job_id, state = follow_upload(page)
    assert state == "FAILED"
    assert "wrong.txt" in page.find_element(By.ID, "upload-status").text

    page.get(f"{stack.api_url}/ui/#/job/{job_id}")
    exception = wait(page, lambda d: (lambda e: e if e.is_displayed() and e.text else None)(
        d.find_element(By.ID, "job-exception")), what="the failure's reason")
    assert "wrong.txt" in exception.text
    assert "FAILED" in page.find_element(By.ID, "job-document").text
    screenshot(page, "console-failed-job.png", tmp_path)

    page.get(f"{stack.api_url}/ui/#/jobs")
    row = wait(page, lambda d: job_row(d, job_id), what="the jobs table")[0]
    assert "FAILED" in row.text

    # Keyboard only: Tab to the job's link (the focus ring shows), Enter opens its page.
    body = page.find_element(By.TAG_NAME, "body")
    for _ in range(40):
        body.send_keys(Keys.TAB)
        if page.execute_script("return document.activeElement.getAttribute('href')") == f"#/job/{job_id}":
            break
    else:
        raise AssertionError("Tab never reached the job's link")
    assert page.execute_script("return getComputedStyle(document.activeElement).outlineStyle") != "none"
    page.switch_to.active_element.send_keys(Keys.ENTER)
    wait(page, lambda d: d.execute_script("return location.hash") == f"#/job/{job_id}", what="the job's page")
    assert page.execute_script("return document.activeElement.id") == "job-title"


def pause_in_ingest_files(job_store: JobStore, job_id: int) -> int:
    """Stop the job's worker (SIGSTOP) once it reports `ingest files`: a stuck job; returns its pid."""
    pid = wait_for(lambda: worker_pids(job_id), what="the worker")[0]
    os.kill(pid, signal.SIGSTOP)
    for _ in range(2000):
        if job_store.get(f"ingest-{job_id}")["status"]["task"] == "ingest files":
            return pid
        os.kill(pid, signal.SIGCONT)
        time.sleep(0.01)
        os.kill(pid, signal.SIGSTOP)
    raise AssertionError("the worker never reached ingest files")


def test_an_administrator_fails_a_stuck_job_from_the_page(page: WebDriver, secured: str, job_store: JobStore,
                                                         tmp_path: Path) -> None:
    with httpx.Client(base_url=secured, headers={"Authorization": f"Bearer {ALICE}"}, timeout=120) as alice, \
            httpx.Client(base_url=secured, headers={"Authorization": f"Bearer {ROOT}"}, timeout=120) as root:
        for client, name in ((root, "calibration.txt"), (alice, "run-41.txt")):
            wait_complete(client, upload(client, bundle({name: name.encode()})[0])["job_id"])
        job_id = upload(alice, big_bundle(16))["job_id"]
        pid = pause_in_ingest_files(job_store, job_id)
        try:
            open_console(page, secured, "/jobs")
            sign_in(page, ROOT)  # an administrator sees every user's jobs, the stuck one at `ingest files`
            wait(page, lambda d: job_row(d, job_id), what="the jobs table")
            screenshot(page, "console-jobs.png", tmp_path)
            page.execute_script(f"location.hash = '#/job/{job_id}'")
            fail = wait(page, lambda d: (lambda b: b if b.is_displayed() else None)(
                d.find_element(By.CSS_SELECTOR, "#admin-form button[data-action=fail]")), what="the Fail button")
            page.find_element(By.ID, "admin-reason").send_keys("stuck on a paused worker")
            fail.click()
            wait(page, lambda d: "Done" in d.find_element(By.ID, "admin-status").text, what="the action's answer")
        finally:
            os.kill(pid, signal.SIGCONT)
        document = wait_for(lambda: (lambda doc: doc if doc["state"] == "FAILED" else None)(
            alice.get(f"/get_state/{job_id}").json()), what="get_state to say FAILED")
        assert document["exception"] == "stuck on a paused worker" and document["complete"] is True
        wait(page, lambda d: "FAILED" in d.find_element(By.ID, "job-document").text, what="the page to show FAILED")


def test_with_tokens_the_page_shows_only_a_sign_in_prompt(page: WebDriver, secured: str) -> None:
    with httpx.Client(base_url=secured, headers={"Authorization": f"Bearer {ALICE}"}, timeout=60) as alice:
        upload(alice, bundle({"mine.txt": b"alice's"})[0])
    open_console(page, secured, "/jobs")
    wait(page, lambda d: d.find_element(By.ID, "login").is_displayed(), what="the sign-in prompt")
    assert not page.find_element(By.ID, "jobs").is_displayed()
    assert page.find_elements(By.CSS_SELECTOR, "#jobs-table tbody tr") == []
    assert "alice" not in page.find_element(By.TAG_NAME, "body").text
    page.execute_script("location.hash = '#/job/999999999'")
    wait(page, lambda d: d.find_element(By.ID, "login").is_displayed(), what="the sign-in prompt")
    assert page.find_element(By.ID, "job-document").text == ""

    sign_in(page, ALICE)
    assert "does not exist" in wait(page, lambda d: d.find_element(By.ID, "job-status").text, what="the job's answer")
    page.execute_script("location.hash = '#/jobs'")
    rows = wait(page, lambda d: d.find_elements(By.CSS_SELECTOR, "#jobs-table tbody tr"), what="alice's jobs")
    assert rows and all(row.find_elements(By.TAG_NAME, "td")[-1].text == "alice" for row in rows)


# -- the endpoints behind them ---------------------------------------------------------------------


def test_job_list_pages_newest_first_and_filters(api: httpx.Client) -> None:
    made = [upload(api, bundle({f"list/{index}.txt": b"x"})[0])["job_id"] for index in range(7)]
    for job_id in made:
        wait_complete(api, job_id)
    seen: list[int] = []
    token = None
    while not set(made) <= set(seen):
        page = api.get("/jobs", params={"limit": 3, **({"continue": token} if token else {})})
        assert page.status_code == 200, page.text
        body = page.json()
        assert len(body["jobs"]) <= 3
        seen += [job["job_id"] for job in body["jobs"]]
        token = body["continue"]
        assert token or set(made) <= set(seen), f"the pages ended before every job was listed: {seen}"
    assert seen == sorted(set(seen), reverse=True), f"not newest first, or listed twice: {seen}"
    failed = api.get("/jobs", params={"state": "FAILED", "limit": 500}).json()["jobs"]
    assert all(job["state"] == "FAILED" for job in failed)
    assert not {job["job_id"] for job in failed} & set(made)
    incomplete = api.get("/jobs", params={"incomplete": "true"}).json()["jobs"]
    assert all(not job["complete"] for job in incomplete)
    for bad in ({"limit": 0}, {"limit": 501}, {"continue": "x"}, {"incomplete": "maybe"}):
        response = api.get("/jobs", params=bad)
        assert response.status_code == 400 and "Traceback" not in response.text


def test_users_see_only_their_jobs_and_only_administrators_act(secured: str) -> None:
    with httpx.Client(base_url=secured, headers={"Authorization": f"Bearer {ALICE}"}, timeout=60) as alice, \
            httpx.Client(base_url=secured, headers={"Authorization": f"Bearer {ROOT}"}, timeout=60) as root, \
            httpx.Client(base_url=secured, timeout=60) as nobody:
        theirs = upload(root, bundle({"roots.txt": b"root's"})[0])["job_id"]
        mine = upload(alice, bundle({"alices.txt": b"alice's"})[0])["job_id"]
        wait_complete(alice, mine)
        listed = alice.get("/jobs", params={"limit": 500}).json()["jobs"]
        assert mine in [job["job_id"] for job in listed] and theirs not in [job["job_id"] for job in listed]
        assert {job["user"] for job in listed} == {"alice"}
        assert alice.get(f"/jobs/{theirs}").status_code == 404
        absent = alice.get("/jobs/999999999").json()["message"]
        assert alice.get(f"/jobs/{theirs}").json()["message"] == absent.replace("999999999", str(theirs))
        assert alice.post(f"/jobs/{mine}/fail").status_code == 403
        assert alice.get(f"/jobs/{mine}").json()["actions"] == []
        assert root.get(f"/jobs/{mine}").json()["user"] == "alice"
        assert root.post(f"/jobs/{mine}/cancel").status_code == 409  # complete: nothing to cancel
        assert nobody.get("/jobs").status_code == 401 and nobody.get(f"/jobs/{mine}").status_code == 401
        assert nobody.get("/ui/").status_code == 200  # the page itself holds no data
