"""Takes docs/dashboard.png: the Ray dashboard's actor list while a sweep runs.

    python docs/dashboard_screenshot.py [--out docs/dashboard.png] [--page actors]

Runs `pdarts-ray sweep` (the `smoke` preset, two trials side by side, on a local Ray),
reads the dashboard's address from its stderr, waits until both trials' actors are alive,
signs headless Chromium in with the cluster's token (the dashboard's own cookie, set over
the DevTools protocol: Chromium has no flag for it) and captures the page. The sweep then
runs to its end, so its local Ray stops with it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

COOKIE = "ray-authentication-token"  # what the dashboard's sign-in sets
# After the page has drawn: smaller type and a longer page, so every actor of the sweep is
# in the picture; React only sees a value typed into a field through the input's native setter.
ARRANGE = """(() => {
  document.body.style.zoom = "%s";
  const label = [...document.querySelectorAll('label')].find(l => l.textContent.trim() === 'Page Size');
  const input = label && document.getElementById(label.htmlFor);
  if (!input) return false;
  Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value').set.call(input, '%d');
  input.dispatchEvent(new Event('input', {bubbles: true}));
  return true;
})()"""
SPACE = """\
name: dashboard
base: {preset: smoke, config: {epochs: 8}}
searcher: grid
max_concurrent_trials: 2
space:
  skip_dropout: {grid: [[0.0, 0.3, 0.6], [0.0, 0.4, 0.7]]}
"""


def token() -> str:
    if os.environ.get("RAY_AUTH_TOKEN"):
        return os.environ["RAY_AUTH_TOKEN"].strip()
    return (
        Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token").read_text().strip()
    )


def alive_actors(dashboard: str) -> list[dict]:
    request = urllib.request.Request(
        f"{dashboard}/api/v0/actors?limit=1000&detail=true", headers={"Authorization": f"Bearer {token()}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        actors = json.loads(response.read())["data"]["result"]["result"]
    return [a for a in actors if a["state"] == "ALIVE"]


async def capture(
    url: str, dashboard: str, out: Path, width: int, height: int, settle: float, zoom: float, page_size: int
) -> None:
    import aiohttp

    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if not chromium:
        raise SystemExit("no chromium on PATH")
    profile = tempfile.mkdtemp(prefix="chromium-")
    proc = subprocess.Popen(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--remote-debugging-port=0",
            f"--window-size={width},{height}",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port_file = Path(profile) / "DevToolsActivePort"
        deadline = time.time() + 30
        while not port_file.is_file() or not port_file.read_text().strip():
            if time.time() > deadline:
                raise SystemExit("chromium did not open its DevTools port")
            await asyncio.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/json/list") as response:
                page = next(t for t in await response.json() if t["type"] == "page")
            async with http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                ids = iter(range(1, 1 << 30))

                async def call(method: str, params: dict | None = None) -> dict:
                    i = next(ids)
                    await ws.send_json({"id": i, "method": method, "params": params or {}})
                    async for message in ws:
                        reply = json.loads(message.data)
                        if reply.get("id") == i:
                            if "error" in reply:
                                raise RuntimeError(f"{method}: {reply['error']}")
                            return reply.get("result", {})
                    raise RuntimeError(f"{method}: the DevTools connection closed")

                await call("Network.enable")
                await call(
                    "Network.setCookie",
                    {"name": COOKIE, "value": token(), "url": f"{dashboard}/", "httpOnly": True},
                )
                await call(
                    "Emulation.setDeviceMetricsOverride",
                    {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
                )
                await call("Page.enable")
                await call("Page.navigate", {"url": url})
                await asyncio.sleep(settle)  # the page polls its API and draws the table
                arranged = await call(
                    "Runtime.evaluate", {"expression": ARRANGE % (zoom, page_size), "returnByValue": True}
                )
                if not arranged.get("result", {}).get("value"):
                    print("no Page Size field: the picture shows the first page", file=sys.stderr)
                await asyncio.sleep(2)
                shot = await call("Page.captureScreenshot", {"format": "png"})
        out.write_bytes(base64.b64decode(shot["data"]))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(profile, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "dashboard.png")
    parser.add_argument("--page", default="actors", help="dashboard page: actors, jobs, overview, cluster")
    parser.add_argument("--size", default="1600x1450", help="WIDTHxHEIGHT")
    parser.add_argument("--zoom", type=float, default=0.6)
    parser.add_argument("--page-size", type=int, default=20, help="rows of the table")
    args = parser.parse_args()
    width, height = map(int, args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        space = Path(tmp) / "space.yaml"
        space.write_text(SPACE)
        # its own Ray temp folder: a sweep joins any Ray already running on the machine, which
        # may have no dashboard (a test's cluster); a short path, as Ray's sockets live there
        ray_tmp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
        sweep = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pdarts_ray.cli",
                "sweep",
                "--space",
                str(space),
                "--storage",
                str(Path(tmp) / "store"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "RAY_TMPDIR": ray_tmp},
        )
        found: list[str] = []
        tail: list[str] = []

        def read_stderr():  # drained to the end, so the sweep never blocks on a full pipe
            for line in sweep.stderr:
                tail[:] = (tail + [line])[-20:]
                m = re.search(r"Ray dashboard: (http://\S+)", line)
                if m and not found:
                    found.append(m.group(1))

        threading.Thread(target=read_stderr, daemon=True).start()
        deadline = time.time() + 300
        while not found and sweep.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        if not found:
            sweep.kill()
            raise SystemExit("the sweep printed no dashboard address:\n" + "".join(tail))
        dashboard = found[0]
        while time.time() < deadline and sweep.poll() is None:
            alive = alive_actors(dashboard)
            if sum(a["class_name"] == "RayTrainWorker" for a in alive) >= 2:
                break
            time.sleep(1)
        else:
            raise SystemExit("the trials' actors were not alive together before the sweep ended")
        time.sleep(3)  # a few epochs in
        asyncio.run(
            capture(
                f"{dashboard}/#/{args.page}",
                dashboard,
                args.out,
                width,
                height,
                settle=6,
                zoom=args.zoom,
                page_size=args.page_size,
            )
        )
        print(f"{args.out}: the {args.page} page during the sweep", file=sys.stderr)
        print(
            "trial actors:",
            sorted(
                a.get("repr_name") or a["class_name"]
                for a in alive_actors(dashboard)
                if a["class_name"].rsplit(".", 1)[-1] in ("ImplicitFunc", "RayTrainWorker")
            ),
            file=sys.stderr,
        )
        try:
            return sweep.wait()
        finally:
            shutil.rmtree(ray_tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
