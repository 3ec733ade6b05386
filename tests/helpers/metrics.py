"""Reading the Prometheus samples a Ray node exports."""

import re
import time
import urllib.request


def prometheus_samples(text: str) -> list[tuple[str, dict, float]]:
    """(name, labels, value) of every labelled sample in Prometheus text."""
    sample = re.compile(r"^(\w+)\{([^}]*)\}\s+(\S+)$")
    label = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
    out = []
    for line in text.splitlines():
        m = sample.match(line)
        if m:
            out.append((m.group(1), dict(label.findall(m.group(2))), float(m.group(3))))
    return out


def node_metrics_url(ray) -> str:
    """Where the (first) Ray node serves its Prometheus text."""
    node = ray.nodes()[0]
    return f"http://{node['NodeManagerAddress']}:{node['MetricsExportPort']}/metrics"


def exported_until(url: str, prefix: str, done, timeout: float = 60) -> dict:
    """Poll the node's samples whose name starts with `prefix` (by (name, run) label) until
    `done(samples)`, or the timeout; Ray exports them periodically, so the last values of a
    run that just ended arrive a moment later."""
    deadline, samples = time.time() + timeout, {}
    while time.time() < deadline:
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        samples = {
            (name, labels.get("run")): (labels, value)
            for name, labels, value in prometheus_samples(text)
            if name.startswith(prefix)
        }
        if done(samples):
            break
        time.sleep(1)
    return samples
