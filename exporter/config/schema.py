"""Typed configuration: one YAML file, validated up front so a bad key fails with its name.

Keys use camelCase, as in OpenCost/Kubecost values files, so a user's muscle memory carries over.
Nothing here is global: the CLI loads a `Config` and passes it down.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import promql_parser
from pydantic import Field, ValidationInfo, field_validator, model_validator

from exporter.config.energy import EnergyConfig
from exporter.config.gpu import GpuConfig
from exporter.config.model import Duration, read_yaml, valid_duration, validated
from exporter.config.model import StrictModel as _Model
from exporter.config.pricebook import FixedCost, Pricing
from exporter.vocab.durations import parse_duration
from exporter.vocab.errors import ConfigError
from exporter.vocab.redact import redact_url, remember


class Allocation(_Model):
    policy: Literal["max", "request", "usage", "weighted"] = Field(
        "max", description="what a container is charged: max(request, usage), request, usage or a weighted mix")
    requestWeight: float = Field(0.7, ge=0, le=1, description="share of request in the 'weighted' policy")
    resolution: Duration = Field(
        "1m", description="the step cost is measured at; each step charges the interval that ends at it. "
                          "Divides 24h (steps are aligned to the epoch)")
    usageRateWindow: Duration = Field("5m", description="rate() window of cAdvisor usage counters")
    chunk: Duration = Field("1h", description="allocate/catch-up query size, a multiple of resolution; also the "
                                              "progress unit")
    concurrency: int = Field(1, ge=1, le=32, description="chunks of a long window queried at once (not serve's "
                             "accrual, which stays in order); Prometheus evaluates each query on one core")
    recordedRules: Literal["auto", "off"] = Field(
        "auto", description="read the mixin's per-(namespace, node) recorded series where they cover a chunk")
    # kube-state-metrics restarts and OOM kills last minutes: an hour bounds the state carried over a
    # gap (a node or pod that changed during it is wrong for at most an hour); longer gaps are
    # reported as uncovered, never invented.
    maxGapBridge: Duration = Field("1h", description="longest source outage bridged with the last known state")
    nodeLabels: list[str] = Field(
        default_factory=list, description="node labels (Kubernetes keys, from kube_node_labels) copied into the "
        "labels of every allocation on the node, under the namespace's and pod's (OpenCost's "
        "ALLOCATION_NODE_LABELS_INCLUDE_LIST); none by default")

    @field_validator("resolution")
    @classmethod
    def _divides_a_day(cls, v: str) -> str:
        # Subquery steps are aligned to the epoch: a step that does not divide 24 h starts no day (nor
        # `today`, a serve piece, a FOCUS charge period) on a step, so those would not tile time.
        if 86400 % parse_duration(v):
            raise ValueError(f"{v} does not divide 24h (steps are aligned to the epoch, so every day must start "
                             "on one): use e.g. 30s, 1m, 2m, 5m, 10m, 15m or 1h")
        return v

    @field_validator("chunk")
    @classmethod
    def _chunk_multiple(cls, v: str, info: ValidationInfo) -> str:
        resolution = info.data.get("resolution")  # absent when it failed its own check
        if resolution is not None:
            res, chunk = parse_duration(resolution), parse_duration(v)
            if chunk % res:
                raise ValueError(f"{v} is not a whole multiple of allocation.resolution ({resolution})")
        return v


_SELECTOR = re.compile(r'^\s*([a-zA-Z_][a-zA-Z0-9_]*\s*(=|!=|=~|!~)\s*"(?:[^"\\]|\\.)*"\s*,?\s*)*$')


def _matcher_list(v: str) -> str:
    if not _SELECTOR.match(v):
        raise ValueError(f"not a list of label matchers: {v!r} (write e.g. job=\"kubelet\")")
    return v.strip().rstrip(",")


class Prometheus(_Model):
    url: str = Field("http://127.0.0.1:9090", description="Prometheus (or Thanos Query, Mimir) base URL")
    timeout: Duration = Field("120s", description="per query")
    retries: int = Field(2, ge=0, le=10, description="per query, on transient failures; backoff 0.5 s, doubling")
    partialResponse: Literal["allow", "deny"] = Field(
        "allow", description="deny: ask Thanos Query and VictoriaMetrics cluster to fail a query that would miss a "
        "store (partial_response=false, deny_partial_response=1); allow: take the answer, and leave the part of "
        "the window a partial answer concerns uncovered. A partial answer is never costed as whole either way")
    bearerTokenFile: str | None = Field(
        None, description="file holding a token sent as 'Authorization: Bearer <token>'")
    cadvisorSelector: str = Field("", description='extra matchers for cAdvisor series, e.g. job="kubelet"')
    ksmSelector: str = Field("", description='extra matchers for kube-state-metrics series, e.g. job="ksm"')
    openCostSelector: str = Field("", description="extra matchers for OpenCost's pricing series")
    dcgmSelector: str = Field("", description='extra matchers for dcgm-exporter series (GPU waste), '
                                              'e.g. job="dcgm-exporter"')
    clusterSelector: str = Field("", description='added to every query, e.g. cluster="prod-us-east-1", '
                                                 "to read one cluster from Thanos Query or Mimir")

    @field_validator("cadvisorSelector", "ksmSelector", "openCostSelector", "dcgmSelector", "clusterSelector")
    @classmethod
    def _matchers(cls, v: str) -> str:
        return _matcher_list(v)

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        try:
            u = urlsplit(v.strip())
            ok = u.scheme.lower() in ("http", "https") and bool(u.hostname) and (u.port is None or u.port > 0)
        except ValueError:  # a port that is not a number, or out of range
            ok = False
        if not ok:
            raise ValueError(f"not an http(s) URL: {redact_url(v)!r} (write e.g. http://prometheus:9090)")
        return v.strip()


class LeaderElection(_Model):
    """Only the holder of a coordination.k8s.io Lease accrues; other replicas stand by."""

    enabled: bool = Field(False, description="accrue only while holding the Lease (set true with several replicas)")
    namespace: str = Field("monitoring", description="namespace of the Lease")
    name: str = Field("chargeback", description="name of the Lease")
    leaseDuration: Duration = Field("30s", description="the leader steps down if it cannot renew within 2/3 of this")
    kubeconfig: str | None = Field(None, description="kubeconfig file; default: in-cluster, then ~/.kube/config")


class Serve(_Model):
    listen: str = Field("0.0.0.0:9184", description="host:port for /metrics, /healthz, /readyz and /allocation/compute")
    interval: Duration = Field("60s", description="how often an accrual cycle runs")
    lag: Duration = Field("3m", description="stay this far behind now so Prometheus holds the data")
    exposeNewSeriesFor: str = Field("2m", description="a new series shows 0 this long before its first increment "
                                                      "(and the watermark rests at midnight): 2x the longest "
                                                      "scrape interval of any Prometheus scraping us")
    watermarkSelector: str | None = Field(
        None, description="deprecated: the watermark is found by its chargeback_ledger label, under any scrape "
                          "job; where set, these matchers still narrow the search (remove it)")
    watermarkLookback: Duration = Field(
        "30d", description="how far back the last scraped watermark is looked for after a restart")
    start: str | None = Field(None, description="RFC3339 start when Prometheus holds no watermark")
    leaderElection: LeaderElection = Field(default_factory=LeaderElection, description="Lease leader election")
    clusterName: str | None = Field(None, description="adds cluster=<name> to every series (else use external labels)")
    clusterLabel: str = Field("cluster", description="label name clusterName is published under")

    @field_validator("watermarkSelector")
    @classmethod
    def _legacy_matchers(cls, v: str | None) -> str | None:
        return None if v is None else _matcher_list(v)

    def ledger(self) -> str:
        """The value of `chargeback_ledger` on the watermark: which exporter's accrual this is (leader-elected
        replicas share it). Under Thanos, give each cluster's exporter its clusterName."""
        return self.clusterName or "default"

    @field_validator("exposeNewSeriesFor")
    @classmethod
    def _hold(cls, v: str) -> str:
        return v if v.strip() == "0s" else valid_duration(v)  # 0s: no hold (in-process tests, nobody scraping)

    def expose_seconds(self) -> int:
        return 0 if self.exposeNewSeriesFor.strip() == "0s" else parse_duration(self.exposeNewSeriesFor)


_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_RESERVED = {"namespace", "component", "resource", "shared_from", "node", "job", "instance", "cluster"}


class SharePolicy(_Model):
    """How one shared source (a shared namespace or a fixed cost) is split over tenants."""

    split: Literal["weighted", "even", "fixed", "metric"] = Field(
        "weighted", description="how this source is split over tenants")
    fixedBy: str = Field("namespace", description="'namespace' or an attribution label such as 'team'")
    percentages: dict[str, float] = Field(
        default_factory=dict, description="split 'fixed': fixedBy value -> percent, summing to 100")
    query: str | None = Field(None, description="PromQL giving a weight per namespace; $window: the interval, "
                                                "at least 5m")
    namespaceLabel: str = Field(
        "namespace", description="split 'metric': the label of the query's result naming the namespace")

    @model_validator(mode="after")
    def _complete(self) -> SharePolicy:
        if self.split == "fixed":
            if not self.percentages:
                raise ValueError("split 'fixed' needs 'percentages'")
            total = sum(self.percentages.values())
            if abs(total - 100) > 0.01:
                raise ValueError(f"fixed percentages must sum to 100, got {total:g}")
            if any(v < 0 for v in self.percentages.values()):
                raise ValueError("fixed percentages cannot be negative")
        if self.split == "metric":
            if not self.query:
                raise ValueError("split 'metric' needs a PromQL 'query'")
            try:
                promql_parser.parse(self.query.replace("$window", "1h"))
            except ValueError as e:
                raise ValueError(f"query is not valid PromQL: {e}") from e
        return self


def _split_list(v: object) -> object:
    return [p.strip() for p in v.split(",") if p.strip()] if isinstance(v, str) else v


class Sharing(_Model):
    """Kubecost's sharing options, by their Kubecost names, plus per-source policies."""

    shareNamespaces: list[str] = Field(
        default_factory=list, description="namespaces whose cost is shared over tenants (a list or a comma string)")
    shareLabels: dict[str, str] = Field(default_factory=dict, description="namespace labels, key: value")
    shareSplit: Literal["weighted", "even"] = Field(
        "weighted", description="default split of shared costs over tenants")
    policies: dict[str, SharePolicy] = Field(default_factory=dict, description="per shared source")
    shareCost: float = Field(0.0, ge=0, description="one monthly fixed cost, named 'shareCost'")
    sharedCosts: list[FixedCost] = Field(
        default_factory=list, description="fixed monthly costs (name, monthly) shared over tenants")
    shareIdle: bool = Field(False, description="share idle over tenants instead of publishing it as __idle__")
    idleByNode: bool = Field(False, description="share each node's idle over that node's tenants, not cluster-wide")
    hoursPerMonth: float = Field(730.0, gt=0, description="hours a monthly amount is prorated over")

    @field_validator("shareNamespaces", mode="before")
    @classmethod
    def _comma_list(cls, v: object) -> object:
        return _split_list(v)

    @field_validator("shareLabels", mode="before")
    @classmethod
    def _pairs(cls, v: object) -> object:
        if isinstance(v, str):
            pairs = [p.split(":", 1) for p in v.split(",") if p.strip()]
            if any(len(p) != 2 for p in pairs):
                raise ValueError("write shareLabels as key:value pairs, e.g. 'platform:true,tier:infra'")
            return {k.strip(): val.strip() for k, val in pairs}
        return v

    def fixed_costs(self) -> dict[str, float]:
        costs = {c.name: c.monthly for c in self.sharedCosts}
        if self.shareCost:
            costs["shareCost"] = self.shareCost
        return costs


class Attribution(_Model):
    """Which labels attribute cost (metric label name -> Kubernetes label key), and where to read them."""

    labels: dict[str, str] = Field(
        default_factory=lambda: {"team": "team", "cost_center": "cost-center", "environment": "environment"},
        description="metric label name -> Kubernetes label key (a list keeps the key as the name)")
    source: Literal["auto", "kubernetes", "prometheus"] = Field(
        "auto", description="where labels are read: the Kubernetes API, kube-state-metrics series, or auto")
    kubeconfig: str | None = Field(None, description="kubeconfig file; default: in-cluster, then ~/.kube/config")

    @field_validator("labels", mode="before")
    @classmethod
    def _list_form(cls, v: object) -> object:
        return {k.replace("-", "_").replace(".", "_").replace("/", "_"): k for k in v} if isinstance(v, list) else v

    @field_validator("labels")
    @classmethod
    def _names(cls, v: dict[str, str]) -> dict[str, str]:
        for name in v:
            if not _LABEL_NAME.match(name) or name in _RESERVED:
                raise ValueError(f"{name!r} cannot be a metric label name")
        return v


class SecretRef(_Model):
    """A secret read from an environment variable or a file, never written in the config itself."""

    env: str | None = Field(None, description="environment variable holding the secret")
    file: str | None = Field(None, description="file holding the secret")

    @model_validator(mode="after")
    def _one(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of 'env' or 'file' (secrets never go in the config)")
        return self

    def value(self) -> str:
        if self.env is not None:
            v = os.environ.get(self.env)
            if not v:
                raise ConfigError(f"secret environment variable {self.env} is not set")
            return remember(v)
        assert self.file is not None
        try:
            return remember(Path(self.file).read_text(encoding="utf-8").strip())
        except OSError as e:
            raise ConfigError(f"secret file {self.file}: {e.strerror}") from e
        except UnicodeDecodeError as e:
            raise ConfigError(f"secret file {self.file}: not UTF-8 text") from e


class Destination(_Model):
    slack: SecretRef | None = Field(None, description="Slack incoming webhook URL")
    email: list[str] = Field(default_factory=list, description="recipients")
    webhook: SecretRef | None = Field(None, description="generic JSON webhook URL (a finance portal)")


class Smtp(_Model):
    host: str = Field(description="SMTP relay host")
    port: int = Field(587, description="SMTP port (587: submission with STARTTLS)")
    starttls: bool = Field(True, description="upgrade the connection with STARTTLS")
    username: str | None = Field(None, description="login user, if the relay needs one")
    password: SecretRef | None = Field(None, description="login password, from an env variable or a file")
    sender: str = Field("chargeback@localhost", description="From: address")
    timeout: float = Field(30, description="seconds per SMTP connection")
    caFile: str | None = Field(None, description="CA bundle to verify the server's STARTTLS certificate")
    verify: bool = Field(True, description="verify the server certificate (leave on)")


class Reports(_Model):
    grafanaURL: str | None = Field(None, description="Grafana base URL the reports link to")
    teams: dict[str, Destination] = Field(default_factory=dict, description="group name -> its own report")
    finance: Destination | None = Field(None, description="gets the full report")
    smtp: Smtp | None = Field(None, description="mail relay for email destinations")
    retries: int = Field(4, ge=0, le=10, description="delivery retries per destination")
    backoff: float = Field(0.5, ge=0, description="seconds, doubled per retry")
    timeout: float = Field(30, gt=0, description="seconds per HTTP delivery attempt (SMTP has smtp.timeout)")


class Reconciliation(_Model):
    """serve re-reads the bill files every `interval` and publishes the variance for `window`."""

    bills: list[str] = Field(default_factory=list, description="paths or globs of billing exports")
    clusterTags: dict[str, str] = Field(
        default_factory=dict, description="bill tags that mark this cluster's lines, e.g. aws:eks:cluster-name: prod; "
                                          "without them, unmatched lines may be other clusters' and are not shared")
    window: str = Field(
        "lastmonth", description="the window the bill is compared over (an OpenCost window, e.g. lastmonth)")
    interval: Duration = Field("6h", description="how often serve re-reads the bill files")


class Api(_Model):
    """Bounds and optional authentication of serve's HTTP endpoints (maxWindow also bounds `allocate`)."""

    maxWindow: Duration = Field("400d", description="longest window /allocation/compute and allocate accept "
                                               "(a year of monthly reports fits)")
    maxConcurrent: int = Field(4, ge=1, le=64, description="/allocation/compute requests computed at once; "
                                                           "more get 429 with Retry-After")
    timeout: Duration = Field("120s", description="deadline of one /allocation/compute; past it the answer is 503 "
                                             "and no further chunk is queried")
    readTimeout: Duration = Field("10s", description="deadline for reading a request (its head and body), "
                                                     "from the connection's opening or its previous answer; "
                                                     "past it the connection is closed")
    maxConnections: int = Field(64, ge=1, le=4096, description="deprecated, ignored: serve is asynchronous and a "
                                                               "connection costs no thread (readTimeout bounds "
                                                               "how long one may take to send a request)")
    webConfigFile: str | None = Field(None, description="Prometheus exporter-toolkit web config (TLS, basic "
                                                        "auth with bcrypt hashes); --web.config.file")
    bearerTokenFile: str | None = Field(None, description="file holding a token accepted as "
                                                          "'Authorization: Bearer <token>'")
    openPaths: list[str] = Field(default_factory=list, description="paths answered without credentials, "
                                                                   "e.g. [/metrics, /healthz, /readyz]")
    cachePoints: int = Field(400_000, ge=0, description="series and samples of Prometheus answers about the "
                                                          "settled past kept for five minutes, for clients asking "
                                                          "the same windows again (about 120 bytes each; 0 keeps "
                                                          "none); a pod-level 2-day window of a 50-pod cluster asks "
                                                          "about 900,000")
    allocationSharing: Literal["opencost", "config"] = Field(
        "opencost", description="what OpenCost's doors (/allocation, /allocation/summary, the MCP allocation "
                                "tools) share when a request does not say (its `sharing=` parameter): opencost, "
                                "only what the request asks (OpenCost's defaults: no namespace or idle sharing; "
                                "fixed costs stay shared); config, the sharing section. Counters, report and "
                                "FOCUS always use the sharing section")


class Config(_Model):
    prometheus: Prometheus = Field(default_factory=Prometheus)
    pricing: Pricing = Field(default_factory=Pricing)
    allocation: Allocation = Field(default_factory=Allocation)
    serve: Serve = Field(default_factory=Serve)
    sharing: Sharing = Field(default_factory=Sharing)
    attribution: Attribution = Field(default_factory=Attribution)
    reports: Reports = Field(default_factory=Reports)
    reconciliation: Reconciliation = Field(default_factory=Reconciliation)
    api: Api = Field(default_factory=Api)
    gpu: GpuConfig = Field(default_factory=GpuConfig)
    energy: EnergyConfig = Field(default_factory=EnergyConfig)

    @model_validator(mode="after")
    def _fixed_by_known_label(self) -> Config:
        for source, policy in self.sharing.policies.items():
            known = ("namespace", *self.attribution.labels)
            if policy.split == "fixed" and policy.fixedBy not in known:
                raise ValueError(f"sharing.policies.{source}.fixedBy: {policy.fixedBy!r} is neither 'namespace' "
                                 f"nor an attribution label ({', '.join(self.attribution.labels)})")
        return self


def load_config(path: str | Path | None) -> Config:
    """Read and validate a config file; raise ConfigError naming the first bad key."""
    if path is None:
        return Config()
    return parse_config(read_yaml(path, "config"), str(path))


def parse_config(raw: dict[str, Any], source: str = "config") -> Config:
    return validated(Config, raw, source)


def override(cfg: Config, section: str, **values: object) -> Config:
    """A copy of `cfg` with some keys of one section replaced (CLI flags, query parameters), re-validated."""
    raw = cfg.model_dump()
    raw[section].update({k: v for k, v in values.items() if v is not None})
    return parse_config(raw, "override")
