"""A real Prometheus server for a test, and the monitoring that the Helm chart
ships (its Grafana dashboard and alert rules), read from the chart's files.

    prom = Prometheus.start(tmp_path, {"runnel": ["127.0.0.1:9644"]}, rules=[ALERT_RULES])
    prom.value('sum(runnel_under_replicated_partitions)')
    prom.stop()

Prometheus is the Debian package's binary (e2e/setup.sh installs it); a test
that needs it skips with the reason when it is missing.
"""

import json
import logging
import re
import shutil
import subprocess
import urllib.parse
from pathlib import Path
from typing import Any, Optional

from harness import REPO_ROOT, free_ports, http_get, wait_until

log = logging.getLogger("e2e")

CHART = REPO_ROOT / "charts" / "runnel-operator"
DASHBOARD = CHART / "dashboards" / "runnel-overview.json"
ALERT_RULES = CHART / "rules" / "runnel-alerts.yaml"

# How the dashboard's Grafana variables are filled in for a query: every
# namespace and group ("All"), and a rate window of a minute (a test reads it within one).
VARIABLES = {"$namespace": ".*", "$group": ".*", "$__rate_interval": "1m"}


def prometheus_missing() -> Optional[str]:
    for tool in ("prometheus", "promtool"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not on PATH: run e2e/setup.sh (Debian package prometheus)"
    return None


def dashboard_queries() -> dict[str, list[str]]:
    """Each panel's title and its PromQL expressions, variables filled in."""
    dashboard = json.loads(DASHBOARD.read_text())
    out: dict[str, list[str]] = {}
    for panel in dashboard["panels"]:
        exprs = [t["expr"] for t in panel.get("targets", [])]
        if not exprs:
            continue
        filled = []
        for expr in exprs:
            for name, value in VARIABLES.items():
                expr = expr.replace(name, value)
            assert "$" not in expr, f"panel {panel['title']!r}: unfilled variable in {expr}"
            filled.append(expr)
        out[panel["title"]] = filled
    return out


class PrometheusError(AssertionError):
    pass


class Prometheus:
    def __init__(self, workdir: Path, port: int, proc: subprocess.Popen, log_path: Path):
        self.workdir, self.port, self.proc, self.log_path = workdir, port, proc, log_path

    @classmethod
    def start(cls, workdir: Path, jobs: dict[str, list[str]], rules: list[Path] = (),
              timeout: float = 60.0) -> "Prometheus":
        """Scrapes each job's targets (HOST:PORT, /metrics) every second and
        evaluates `rules` every second."""
        workdir.mkdir(parents=True, exist_ok=True)
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(r) for r in rules],
            "scrape_configs": [{"job_name": job, "static_configs": [{"targets": targets}]}
                               for job, targets in jobs.items()],
        }
        # JSON is YAML: no YAML writer needed.
        (workdir / "prometheus.yml").write_text(json.dumps(config, indent=2))
        (port,) = free_ports(1)
        log_path = workdir / "prometheus.log"
        argv = ["prometheus", f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}", "--web.enable-lifecycle"]
        with open(log_path, "ab") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL)
        prom = cls(workdir, port, proc, log_path)
        try:
            wait_until(prom.ready, timeout=timeout, what="Prometheus ready")
        except BaseException:
            prom.stop()
            raise
        log.info("prometheus pid %d on 127.0.0.1:%d scraping %s", proc.pid, port, jobs)
        return prom

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise PrometheusError(f"prometheus exited {self.proc.returncode}: {self.log_tail()}")
        try:
            status, _ = http_get(f"http://127.0.0.1:{self.port}/-/ready")
        except OSError:
            return False
        return status == 200

    def api(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        status, body = http_get(f"http://127.0.0.1:{self.port}/api/v1/{path}?{query}", timeout=10)
        answer = json.loads(body)
        if status != 200 or answer.get("status") != "success":
            raise PrometheusError(f"{path} {params}: HTTP {status}: {answer}")
        return answer["data"]

    def query(self, expr: str) -> list[dict]:
        """An instant query's vector: [{"metric": {...}, "value": [t, "v"]}]."""
        data = self.api("query", query=expr)
        if data["resultType"] != "vector":
            raise PrometheusError(f"{expr}: a {data['resultType']}, not a vector")
        return data["result"]

    def value(self, expr: str) -> Optional[float]:
        """The single sample of `expr`, or None when it has none."""
        result = self.query(expr)
        if not result:
            return None
        if len(result) > 1:
            raise PrometheusError(f"{expr}: {len(result)} series, expected one: {result}")
        return float(result[0]["value"][1])

    def series(self, expr: str, label: str) -> dict[str, float]:
        """`expr`'s samples by the value of `label`."""
        return {s["metric"].get(label, ""): float(s["value"][1]) for s in self.query(expr)}

    def alerts(self) -> dict[str, str]:
        """Active alerts by name: their state (pending or firing)."""
        return {a["labels"]["alertname"]: a["state"] for a in self.api("alerts")["alerts"]}

    def targets_up(self) -> int:
        return sum(1 for t in self.api("targets")["activeTargets"] if t["health"] == "up")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)


def check_rules(path: Path) -> str:
    """`promtool check rules`; its output, raising when it refuses the file."""
    done = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True,
                          text=True, timeout=60)
    if done.returncode != 0:
        raise PrometheusError(f"promtool check rules {path}: {done.stdout}{done.stderr}")
    return done.stdout


def alert_names(path: Path = ALERT_RULES) -> list[str]:
    return re.findall(r"^\s*- alert:\s*(\S+)", path.read_text(), re.M)
