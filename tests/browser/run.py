#!/usr/bin/env python3
"""A real browser through spout's OAuth web flow (issue 19).

Starts spout (target/debug/spout) on fresh ports and a fresh database, and
the example third-party app (target/debug/examples/oauth_app) registered
with its redirect URI; then drives headless Chromium over WebDriver
(chromedriver, plain HTTP: no Python packages needed) through:

  1. the app's sign-in link: the sign-in page, username and password;
  2. the consent page: Allow; the browser lands on the app's callback, the
     app trades the code (PKCE) for a token and opens its App Stream;
  3. the "your authorized apps" page: Revoke; the app's stream receives the
     `token` event with is_deleted.

It checks what a user would see at each step (the page's heading, the
stylesheet applied under the pages' CSP, where the browser ended up) and
saves a screenshot of each page in tests/browser/out/. Every wait has a
deadline. Run by .ci/run; by hand: `bash tests/browser/run.sh`.
"""

import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SPOUT = os.environ.get("SPOUT_BIN", os.path.join(ROOT, "target", "debug", "spout"))
APP = os.environ.get("OAUTH_APP_BIN", os.path.join(ROOT, "target", "debug", "examples", "oauth_app"))
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
OUT = os.path.join(ROOT, "tests", "browser", "out")
DEADLINE = 20.0
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what, check, deadline=DEADLINE):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        got = check()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class Lines:
    """Collects a process's output lines on a thread."""

    def __init__(self, stream):
        self.lines = []
        self.lock = threading.Lock()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream):
        for line in iter(stream.readline, ""):
            with self.lock:
                self.lines.append(line.rstrip("\n"))

    def find(self, pred):
        with self.lock:
            return next((l for l in self.lines if pred(l)), None)

    def text(self):
        with self.lock:
            return "\n".join(self.lines)


class WebDriver:
    def __init__(self, port, profile):
        self.base = f"http://127.0.0.1:{port}"
        caps = {
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": CHROMIUM,
                        "args": [
                            "--headless",
                            "--no-sandbox",
                            "--disable-gpu",
                            "--disable-quic",
                            "--no-first-run",
                            "--disable-background-networking",
                            "--disable-component-update",
                            "--disable-sync",
                            "--window-size=900,800",
                            f"--user-data-dir={profile}",
                        ],
                    },
                }
            }
        }
        self.sid = self.call("POST", "/session", caps)["sessionId"]

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=DEADLINE) as r:
                return json.loads(r.read() or b"{}").get("value")
        except urllib.error.HTTPError as e:
            raise AssertionError(f"webdriver {method} {path}: {e.code} {e.read()[:500]!r}")

    def s(self, path):
        return f"/session/{self.sid}{path}"

    def go(self, url):
        self.call("POST", self.s("/url"), {"url": url})

    def url(self):
        return self.call("GET", self.s("/url"))

    def find(self, css):
        return self.call("POST", self.s("/element"), {"using": "css selector", "value": css})[ELEMENT]

    def type(self, css, text):
        self.call("POST", self.s(f"/element/{self.find(css)}/value"), {"text": text})

    def click(self, css):
        self.call("POST", self.s(f"/element/{self.find(css)}/click"), {})

    def js(self, script):
        return self.call("POST", self.s("/execute/sync"), {"script": script, "args": []})

    def heading(self):
        return self.js("const h = document.querySelector('h1'); return h ? h.textContent : null;")

    def shot(self, name):
        png = base64.b64decode(self.call("GET", self.s("/screenshot")))
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(png)
        print(f"  screenshot {name} ({len(png)} bytes)")

    def quit(self):
        try:
            self.call("DELETE", self.s(""))
        except Exception:
            pass


def spout_admin(db, args, stdin=""):
    r = subprocess.run([SPOUT, "admin", *args, "--db", db], input=stdin, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, f"spout admin {args}: {r.stderr}"
    return r.stdout


def http_json(url, token=None, form=None):
    data = urllib.parse.urlencode(form).encode() if form else None
    req = urllib.request.Request(url, data=data)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=DEADLINE) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def main():
    for path in (SPOUT, APP, CHROMIUM, CHROMEDRIVER):
        if not os.path.exists(path):
            sys.exit(f"missing {path} (see tests/browser/run.sh)")
    os.makedirs(OUT, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="spout-browser-")
    procs = []
    driver = None
    try:
        db = os.path.join(tmp, "spout.db")
        server = subprocess.Popen(
            [SPOUT, "serve", "--db", db, "--api-addr", "127.0.0.1:0", "--stream-addr", "127.0.0.1:0"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        procs.append(server)
        out = Lines(server.stdout)
        Lines(server.stderr)
        api = wait_for("the API address", lambda: out.find(lambda l: l.startswith("api listening on ")))
        api = api.split(" on ")[1]
        stream = wait_for("the stream address", lambda: out.find(lambda l: l.startswith("stream listening on ")))
        stream = stream.split(" on ")[1]
        print(f"spout at {api} and {stream}")

        spout_admin(db, ["user", "add", "alice"], "correct horse battery\n")
        app_port = free_port()
        callback = f"http://127.0.0.1:{app_port}/callback"
        reg = json.loads(spout_admin(db, ["app", "add", "--redirect-uri", callback, "Browser Notes"]))

        app = subprocess.Popen(
            [APP, api, stream, reg["client_id"], reg["client_secret"], "--port", str(app_port), "--events", "1"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        procs.append(app)
        app_out = Lines(app.stdout)
        app_err = Lines(app.stderr)
        link = wait_for("the app's sign-in link", lambda: app_out.find(lambda l: "/oauth/authenticate?" in l)).strip()

        wd_port = free_port()
        wd = subprocess.Popen([CHROMEDRIVER, f"--port={wd_port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(wd)
        wait_for("chromedriver", lambda: socket.socket().connect_ex(("127.0.0.1", wd_port)) == 0)
        driver = WebDriver(wd_port, os.path.join(tmp, "profile"))

        print("1. sign in")
        driver.go(link)
        assert driver.heading() == "Sign in", driver.heading()
        # The stylesheet applies under the pages' CSP (no inline style).
        bg = driver.js("return getComputedStyle(document.body).backgroundColor;")
        assert bg == "rgb(246, 246, 244)", f"the stylesheet did not apply: {bg}"
        page = driver.js("return document.body.innerText;")
        assert "Browser Notes" in page, page
        driver.shot("1-sign-in.png")
        driver.type("#username", "alice")
        driver.type("#password", "correct horse battery")
        driver.click("button[type=submit]")
        wait_for("the consent page", lambda: driver.heading() == "Authorize an app")

        print("2. consent")
        page = driver.js("return document.body.innerText;")
        for words in ("Browser Notes", "Read your timelines, mentions and interactions", "Read and send your private and channel messages"):
            assert words in page, f"{words!r} not on the consent page: {page}"
        driver.shot("2-consent.png")
        driver.click("button[value=allow]")
        wait_for("the app's callback", lambda: driver.url().startswith(callback))
        assert "You are signed in" in driver.js("return document.body.innerText;")
        driver.shot("3-back-at-the-app.png")
        signed = wait_for("the app's token", lambda: app_out.find(lambda l: l.startswith("signed in as @alice")))
        print(f"  the app says: {signed}")
        wait_for("the app's stream", lambda: app_out.find(lambda l: '"connection_id"' in l) or app.poll() is not None)
        assert app.poll() is None, f"the app stopped: {app_err.text()}"

        print("3. revoke on the authorized apps page")
        driver.go(f"{api}/oauth/apps")
        assert driver.heading() == "Your authorized apps", driver.heading()
        assert "Browser Notes" in driver.js("return document.body.innerText;")
        driver.shot("4-authorized-apps.png")
        driver.click("button.danger")
        wait_for("the revoked notice", lambda: "The app was revoked" in (driver.js("return document.body.innerText;") or ""))
        assert "You have not authorized any app" in driver.js("return document.body.innerText;")
        driver.shot("5-revoked.png")
        # The app's stream got the revocation, and the app ended (--events 1).
        app.wait(timeout=DEADLINE)
        event = app_out.find(lambda l: '"type":"token"' in l)
        assert event, f"no token event reached the app: {app_out.text()}"
        ev = json.loads(event)
        assert ev["meta"].get("is_deleted") is True and ev["data"]["user"]["username"] == "alice", event
        print("  the app's stream got the token event with is_deleted")
        print("browser check passed")
    finally:
        if driver:
            driver.quit()
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
