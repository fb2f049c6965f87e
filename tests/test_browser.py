"""Swagger UI at /docs in a real browser: Authorize, then try the API as a person would.

Debian's Chromium (``/usr/bin/chromium``), driven by Playwright's sync API with
``executable_path`` (Playwright never downloads a browser here), opens the docs
of ``examples/docs_app.py``, served by uvicorn on 127.0.0.1 with a fresh random
key. The page finds its way by what a person sees (buttons by name, operations
by path, the status and body in the response panel), not by the API.

Every request the page makes to a host other than 127.0.0.1 is blocked and
recorded, and must not happen: the docs need no CDN. The page may log no
JavaScript error and no Content-Security-Policy violation.

Without ``/usr/bin/chromium`` the tests skip, naming the fix
(``apt-get install chromium``); ``ASGI_APIKEY_REQUIRE_BROWSER=1`` (set by
``.ci/run``) makes that a failure.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import (
    ConsoleMessage,
    Error,
    Locator,
    Page,
    Response,
    Route,
    expect,
    sync_playwright,
)

from asgi_apikey import APIKey
from asgi_apikey.headers import DOCS_CONTENT_SECURITY_POLICY
from examples.docs_app import DOCS_POLICY, create_app
from tests.servers import HOST, serve

CHROMIUM = "/usr/bin/chromium"
#: Headless, and quiet: no first-run pages, no background traffic of Chromium's own.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
#: How long one step (a click, a response to show) may take before the test fails.
STEP_MS = 10_000
#: What every response but the docs pages gets, written out: a change of it shows here.
STRICT_CSP = "default-src 'none'; frame-ancestors 'none'"
#: The policies /docs runs under: the example's own (no other host), and the
#: package's default for docs pages (which also allows FastAPI's CDN).
POLICIES = {"app-policy": DOCS_POLICY, "package-policy": None}
SCREENSHOT = Path("/tmp/docs-200.png")

#: What Chromium logs, as a console error, for every response with this status: expected
#: where a test makes the API refuse (the page shows those responses, it did not fail).
_REFUSED = "Failed to load resource: the server responded with a status of {status} "
#: Reports each CSP violation to the test as it happens, before the page's own scripts run.
_REPORT_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (event) => {
  window.reportViolation(
    `${event.effectiveDirective} blocked ${event.blockedURI || "inline"}` +
      ` (${event.sourceFile}:${event.lineNumber})`
  );
}, true);
"""


def hidden(key: str, text: str, where: str) -> None:
    """Fail if ``text`` shows ``key``; unlike an assert, the message never quotes either."""
    if key in text:
        pytest.fail(f"{where} shows the key", pytrace=False)


def chromium() -> str:
    """The path of Debian's Chromium, or skip (fail under ``ASGI_APIKEY_REQUIRE_BROWSER=1``)."""
    if os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    reason = (
        f"BROWSER TESTS NOT RUN: {CHROMIUM} is missing; install Debian's Chromium "
        "(apt-get install chromium) to test /docs in a real browser"
    )
    if os.environ.get("ASGI_APIKEY_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason}, and ASGI_APIKEY_REQUIRE_BROWSER=1 requires it")
    pytest.skip(reason)


@dataclass
class Docs:
    """The docs page of the example app, and what the browser did while it was open."""

    page: Page
    base: str
    #: The Content-Security-Policy /docs must carry.
    policy: str
    key: str = field(repr=False)  # a failure's message shows the Docs, never the key
    #: Requests to any host but 127.0.0.1 (blocked), and every URL the page asked for.
    outside: list[str] = field(default_factory=list)
    requested: list[str] = field(default_factory=list)
    #: Console errors and warnings, uncaught exceptions, and CSP violations, as they came.
    console: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)

    def open(self) -> Response:
        """Load /docs and wait until Swagger UI has drawn the operations."""
        response = self.page.goto(self.base + "/docs")
        assert response is not None
        try:
            expect(self.page.locator(".opblock").first).to_be_visible(timeout=STEP_MS)
        except AssertionError as error:
            raise AssertionError(f"Swagger UI drew no operation; {self.log()}") from error
        return response

    def log(self) -> str:
        """What the browser reported, for a failure's message."""
        return (
            f"requested: {self.requested}; console: {self.console}; "
            f"page errors: {self.page_errors}; CSP violations: {self.violations}"
        )

    def operation(self, path: str) -> Locator:
        """The operation block of ``path``, as listed on the page."""
        return self.page.locator(".opblock").filter(
            has=self.page.locator(f'.opblock-summary-path[data-path="{path}"]')
        )

    def lock(self, path: str) -> Locator:
        """The lock button Swagger UI draws on an operation that declares security."""
        return self.operation(path).locator(".opblock-summary .authorization__btn")

    def try_out(self, path: str) -> Response:
        """Expand the operation, press Try it out and Execute; the response the browser got."""
        operation = self.operation(path)
        execute = operation.get_by_role("button", name="Execute")
        if not execute.is_visible():  # not yet in try-it-out mode
            summary = operation.locator(".opblock-summary-control")
            if summary.get_attribute("aria-expanded") != "true":
                summary.click()
            operation.get_by_role("button", name="Try it out").click()
        with self.page.expect_response(lambda response: response.url == self.base + path) as info:
            execute.click()
        return info.value

    def shown_status(self, path: str) -> Locator:
        """The status code cell of the response panel ("Server response")."""
        panel = self.operation(path).locator(".live-responses-table tr.response")
        return panel.locator(".response-col_status")

    def shown_body(self, path: str) -> Any:
        """The response body as the panel shows it, parsed."""
        panel = self.operation(path).locator(".live-responses-table tr.response")
        body = panel.locator(".highlight-code code")
        # The highlighter redraws the body in pieces: wait for a whole object with a member.
        expect(body).to_have_text(re.compile(r'^\s*\{.*"\w+".*\}\s*$', re.DOTALL))
        return json.loads(body.text_content() or "")

    def shown_headers(self, path: str) -> str:
        panel = self.operation(path).locator(".live-responses-table tr.response")
        return panel.locator("pre", has=self.page.locator(".headerline")).inner_text()

    def authorize(self) -> None:
        """Authorize with the key in the HTTPBearer field, then close the dialog."""
        self.page.get_by_role("button", name="Authorize", exact=True).click()
        dialog = self.page.locator(".modal-ux")
        scheme = dialog.locator(".auth-container").filter(has_text="HTTPBearer")
        scheme.get_by_role("textbox").fill(self.key)
        scheme.get_by_role("button", name="Apply credentials").click()
        expect(scheme).to_contain_text("Authorized")
        hidden(self.key, dialog.inner_text(), "the Authorize dialog")  # it shows ******
        scheme.get_by_role("button", name="Close").click()
        expect(dialog).to_have_count(0)

    def assert_clean(self, *refused: int) -> None:
        """Nothing from another host, no JS error, no CSP violation; ``refused``: expected."""
        assert self.outside == [], f"the page asked other hosts: {self.outside}"
        assert self.requested, "the page made no request at all"
        assert self.page_errors == [], f"uncaught errors on the page: {self.page_errors}"
        assert self.violations == [], f"CSP violations: {self.violations}"
        expected = [_REFUSED.format(status=status) for status in refused]
        unexpected = [
            text for text in self.console if not any(text.startswith(e) for e in expected)
        ]
        assert unexpected == [], f"console errors and warnings: {unexpected}"


@pytest.fixture
def docs(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Docs]:
    """The example app under uvicorn with a fresh key, and /docs's page in Chromium.

    Parametrized indirectly with a name of ``POLICIES``; the example's own by default.
    """
    chromium()  # skip (or fail) before starting anything
    docs_policy = POLICIES[getattr(request, "param", "app-policy")]
    key = "sk-" + secrets.token_urlsafe(32)
    monkeypatch.setenv("API_KEY", key)  # create_app() reads the environment, as under uvicorn
    app = create_app(docs_policy)
    with serve(app, "uvicorn-httptools") as server, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=list(FLAGS))
        try:
            # Playwright starts Chromium on a fresh profile of its own (it refuses
            # --user-data-dir); a fresh context: no cookies, no storage.
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            context.set_default_timeout(STEP_MS)
            base = f"http://{HOST}:{server.port}"
            policy = DOCS_CONTENT_SECURITY_POLICY if docs_policy is None else docs_policy
            docs = Docs(context.new_page(), base, policy, key)

            def guard(route: Route) -> None:
                url = route.request.url
                docs.requested.append(url)
                if urlsplit(url).hostname != HOST:
                    docs.outside.append(url)
                    route.abort("blockedbyclient")
                else:
                    route.continue_()

            def console(message: ConsoleMessage) -> None:
                if message.type in ("error", "warning"):
                    docs.console.append(message.text)

            def page_error(error: Error) -> None:
                docs.page_errors.append(f"{error.name}: {error.message}")

            def violation(report: str) -> None:
                docs.violations.append(report)

            context.route("**/*", guard)
            context.expose_function("reportViolation", violation)
            context.add_init_script(_REPORT_VIOLATIONS)
            docs.page.on("console", console)
            docs.page.on("pageerror", page_error)
            yield docs
        finally:  # closes the context and its pages too
            browser.close()


both_policies = pytest.mark.parametrize("docs", list(POLICIES), indirect=True)


@both_policies
def test_docs_come_from_the_app_and_show_authorize_and_locks(docs: Docs) -> None:
    page = docs.open()
    assert page.status == 200
    # Swagger UI's own files, from this app: no CDN.
    assert f"{docs.base}/docs/assets/swagger-ui-bundle.js" in docs.requested
    assert f"{docs.base}/docs/assets/swagger-ui.css" in docs.requested
    expect(docs.page.get_by_role("button", name="Authorize", exact=True)).to_be_visible()
    # A lock on what needs a key (open until authorized), none on the public route.
    for path in ("/v1/models", "/v1/admin/usage"):
        expect(docs.lock(path)).to_have_attribute("aria-label", "authorization button unlocked")
    expect(docs.lock("/v1/operations")).to_have_count(1)  # a key is welcome, not needed
    expect(docs.lock("/health")).to_have_count(0)
    # /docs carries the policy for docs pages, under which Swagger UI ran (assert_clean).
    assert page.header_value("content-security-policy") == docs.policy
    docs.assert_clean()


def test_the_example_docs_policy_allows_no_other_host() -> None:
    sources = DOCS_POLICY.replace(";", " ").split()
    remote = [s for s in sources if s == "*" or s.startswith(("http", "//")) or "://" in s]
    assert remote == [], f"/docs allows sources on other hosts: {DOCS_POLICY}"


@both_policies
def test_authorize_then_a_protected_operation_answers_200(docs: Docs) -> None:
    docs.open()
    # Tried without a key: the panel shows the 401 and its challenge.
    refused = docs.try_out("/v1/models")
    assert refused.status == 401
    expect(docs.shown_status("/v1/models")).to_have_text(re.compile(r"^\s*401\b"))
    assert 'www-authenticate: Bearer realm="api"' in docs.shown_headers("/v1/models")
    # Authorized: the lock closes and the same operation answers 200 for the key.
    docs.authorize()
    expect(docs.lock("/v1/models")).to_have_attribute("aria-label", "authorization button locked")
    answered = docs.try_out("/v1/models")
    assert answered.status == 200
    if answered.request.header_value("authorization") != f"Bearer {docs.key}":
        pytest.fail("the browser did not send the key as a bearer token", pytrace=False)
    expect(docs.shown_status("/v1/models")).to_have_text(re.compile(r"^\s*200\b"))
    body = docs.shown_body("/v1/models")
    hidden(docs.key, json.dumps(body), "the response body")
    hidden(docs.key, docs.shown_headers("/v1/models"), "the response headers")
    assert body == {"models": ["small", "large"], "key_id": APIKey(docs.key).key_id}
    # The API's own responses carry the strict policy, the 401 as much as the 200.
    assert answered.header_value("content-security-policy") == STRICT_CSP
    assert refused.header_value("content-security-policy") == STRICT_CSP
    # Swagger UI's curl box repeats the key the user typed: masked in the picture.
    operation = docs.operation("/v1/models")
    operation.screenshot(path=SCREENSHOT, mask=[operation.locator(".curl-command")])
    docs.assert_clean(401)


def test_optional_and_scoped_operations_in_the_docs(docs: Docs) -> None:
    docs.open()
    anonymous = docs.try_out("/v1/operations")
    assert anonymous.status == 200
    assert docs.shown_body("/v1/operations") == {"operations": ["chat"], "caller": None}
    docs.authorize()
    assert docs.try_out("/v1/operations").status == 200
    expect(docs.shown_status("/v1/operations")).to_have_text(re.compile(r"^\s*200\b"))
    key_id = APIKey(docs.key).key_id
    expect(docs.operation("/v1/operations").locator(".live-responses-table")).to_contain_text(
        key_id
    )
    # A key without the admin scope: 403, and the panel says which scope is missing.
    assert docs.try_out("/v1/admin/usage").status == 403
    expect(docs.shown_status("/v1/admin/usage")).to_have_text(re.compile(r"^\s*403\b"))
    assert 'error="insufficient_scope"' in docs.shown_headers("/v1/admin/usage")
    assert "admin" in docs.shown_body("/v1/admin/usage")["detail"]
    docs.assert_clean(403)


@pytest.mark.parametrize("required", [False, True], ids=["skips", "fails-when-required"])
def test_without_chromium_the_tests_skip_or_fail_naming_the_fix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, required: bool
) -> None:
    monkeypatch.setattr(f"{__name__}.CHROMIUM", str(tmp_path / "no-chromium"))
    if required:
        monkeypatch.setenv("ASGI_APIKEY_REQUIRE_BROWSER", "1")
    else:
        monkeypatch.delenv("ASGI_APIKEY_REQUIRE_BROWSER", raising=False)
    outcome = pytest.fail.Exception if required else pytest.skip.Exception
    with pytest.raises(outcome, match=r"apt-get install chromium"):
        chromium()
