"""Offline checks of the Prometheus config, alert rules and Grafana dashboard.

Every expression must parse as PromQL, and every metric it reads must be one the services
export (services/common/metrics.py, FastStream's middleware) or one Prometheus makes itself.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml
from prometheus_client import CollectorRegistry

from services.common import metrics
from services.common.health import nats_prometheus_middleware

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
GRAFANA_DIR = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA_DIR / "dashboards" / "rebalancer.json"

PROMETHEUS_OWN_METRICS = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})
# Grafana replaces these before the query reaches Prometheus.
GRAFANA_INTERVALS = re.compile(r"\$__(rate_interval|interval|range)\b")
LABEL_VALUES = re.compile(r"^label_values\(\s*(?P<metric>[a-zA-Z_:][\w:]*)\s*,\s*(?P<label>\w+)\s*\)$")


def metric_names(expr: str) -> list[str]:
    """The metric names an expression selects (parsing it fails on a syntax error)."""
    ast = promql_parser.parse(GRAFANA_INTERVALS.sub("5m", expr))
    names: list[str] = []

    def visit(node: Any) -> bool:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            names.append(node.name)
        return True

    promql_parser.walk(ast, visit)
    return names


@pytest.fixture(scope="module")
def known_metrics() -> frozenset[str]:
    faststream_registry = CollectorRegistry()
    nats_prometheus_middleware("any", registry=faststream_registry)
    return metrics.exposed_names() | metrics.exposed_names(faststream_registry) | PROMETHEUS_OWN_METRICS


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def alert_rules() -> list[dict[str, Any]]:
    groups = load_yaml(PROMETHEUS_DIR / "alerts.yml")["groups"]
    return [rule for group in groups for rule in group["rules"]]


def dashboard_expressions() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel["targets"]]


def test_metric_names_sees_through_functions_aggregations_and_joins() -> None:
    expr = (
        'max by (p) (a_total{x="1"} and on (p) (b == on (p) group_left max by (p) (b)))'
        " / histogram_quantile(0.99, sum by (le) (rate(c_bucket[$__rate_interval]))) + up offset 1h"
    )
    assert sorted(set(metric_names(expr))) == ["a_total", "b", "c_bucket", "up"]
    with pytest.raises(ValueError):
        metric_names("sum(rate(a_total[5m])")


def test_every_alert_is_well_formed_and_reads_only_exported_metrics(known_metrics: frozenset[str]) -> None:
    rules = alert_rules()
    assert len({rule["alert"] for rule in rules}) == len(rules), "alert names must be unique"
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}, rule[
            "alert"
        ]
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        if "for" in rule:
            promql_parser.parse_duration(rule["for"])
        names = metric_names(rule["expr"])
        assert names, f"{rule['alert']} reads no metric"
        unknown = set(names) - known_metrics
        assert not unknown, f"{rule['alert']} reads metrics nobody exports: {sorted(unknown)}"


@pytest.mark.parametrize(
    ("concern", "metric"),
    [
        ("failed runs", "rebalancer_runs_total"),
        ("stuck runs", "rebalancer_oldest_active_run_age_seconds"),
        ("dead letters", "rebalancer_dead_letters_total"),
        ("exchange errors", "rebalancer_exchange_errors_total"),
        ("outbox lag", "rebalancer_outbox_lag_seconds"),
        ("orders of unknown outcome", "rebalancer_oldest_unresolved_order_age_seconds"),
    ],
)
def test_the_issue_s_alerts_exist(concern: str, metric: str) -> None:
    assert any(metric in metric_names(rule["expr"]) for rule in alert_rules()), f"no alert on {concern}"


def test_every_dashboard_query_reads_only_exported_metrics(known_metrics: frozenset[str]) -> None:
    expressions = dashboard_expressions()
    assert expressions
    for title, expr in expressions:
        names = metric_names(expr)
        assert names, f"panel {title!r} reads no metric"
        unknown = set(names) - known_metrics
        assert not unknown, f"panel {title!r} reads metrics nobody exports: {sorted(unknown)}"


def test_dashboard_variables_read_exported_metrics_and_labels() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    labels_of = {
        "rebalancer_portfolio_value": set(
            next(labels for name, _, labels in metrics.PortfolioSeries.FAMILIES if name == "rebalancer_portfolio_value")
        ),
    }
    for variable in dashboard["templating"]["list"]:
        match = LABEL_VALUES.match(variable["query"]["query"])
        assert match, variable["name"]
        assert match["label"] in labels_of[match["metric"]]


def test_dashboard_covers_what_an_operator_needs() -> None:
    read = {name for _, expr in dashboard_expressions() for name in metric_names(expr)}
    for needed in (
        "rebalancer_asset_drift_pp",
        "rebalancer_runs_total",
        "rebalancer_orders_total",
        "rebalancer_value_traded_total",
        "rebalancer_fees_total",
        "rebalancer_run_duration_seconds_bucket",
        "rebalancer_exchange_call_seconds_bucket",
        "rebalancer_exchange_errors_total",
        "rebalancer_dead_letters_total",
        "rebalancer_due_backlog",
        "rebalancer_due_waiting_for_account",
        "rebalancer_oldest_unresolved_order_age_seconds",
    ):
        assert needed in read, f"no panel shows {needed}"


def test_dashboard_panels_use_the_provisioned_datasource_and_do_not_overlap() -> None:
    datasource = load_yaml(GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml")["datasources"][0]
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"]
    occupied: set[tuple[int, int]] = set()
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(set(ids)) == len(ids)
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        cells = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & occupied, f"panel {panel['title']!r} overlaps another"
        occupied |= cells


def test_dashboard_provider_path_is_where_compose_mounts_the_dashboards() -> None:
    provider = load_yaml(GRAFANA_DIR / "provisioning" / "dashboards" / "rebalancer.yml")["providers"][0]
    compose = load_yaml(ROOT / "docker-compose.yml")
    mounts = dict(volume.rsplit(":", 2)[:2] for volume in compose["services"]["grafana"]["volumes"])
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"


def test_prometheus_scrapes_every_service_on_its_port_and_loads_the_rules() -> None:
    config = load_yaml(PROMETHEUS_DIR / "prometheus.yml")
    compose = load_yaml(ROOT / "docker-compose.yml")
    mounted_dir = next(
        volume.split(":")[1]
        for volume in compose["services"]["prometheus"]["volumes"]
        if "deploy/prometheus" in volume
    )
    assert config["rule_files"] == [f"{mounted_dir}/alerts.yml"]

    scraped: dict[str, int] = {}
    for job in config["scrape_configs"]:
        for sd in job.get("dns_sd_configs", []):
            for name in sd["names"]:
                scraped[name] = sd["port"]
    services = {
        name: service
        for name, service in compose["services"].items()
        if service.get("command", [""])[0].startswith("services.") and name != "migrate"
    }
    assert set(services) == {"scheduler", "pricer", "planner", "executor", "ledger", "api"}
    for name, service in services.items():
        environment = service["environment"]
        expected_port = (
            int(environment.get("API_PORT", 8000)) if name == "api" else int(environment["OPS_PORT"])
        )
        assert scraped.get(name) == expected_port, name


def test_both_prometheus_configs_use_the_job_names_the_alerts_expect() -> None:
    alerted_jobs = {"rebalancer", "rebalancer-api"}
    for filename in ("prometheus.yml", "prometheus-kubernetes.yml"):
        config = load_yaml(PROMETHEUS_DIR / filename)
        assert config["rule_files"] == ["/etc/prometheus/alerts.yml"], filename
        jobs = {job["job_name"] for job in config["scrape_configs"]}
        assert alerted_jobs <= jobs, filename
        for job in config["scrape_configs"]:
            if job["job_name"] in alerted_jobs:
                targets = [c["target_label"] for c in job["relabel_configs"] if "target_label" in c]
                assert "service" in targets, f"{filename}: {job['job_name']} sets no service label"


def test_kubernetes_scrape_config_keeps_the_ports_the_manifests_name() -> None:
    config = load_yaml(PROMETHEUS_DIR / "prometheus-kubernetes.yml")
    manifests = [
        doc
        for doc in yaml.safe_load_all((ROOT / "deploy" / "kubernetes" / "service-endpoints.yaml").read_text())
    ]
    service_ports = {
        (doc["metadata"]["name"], port["name"]) for doc in manifests for port in doc["spec"]["ports"]
    }
    for job in config["scrape_configs"]:
        keep = next(c for c in job["relabel_configs"] if c.get("action") == "keep")
        service, port = keep["regex"].split(";")
        assert (service, port) in service_ports, job["job_name"]
