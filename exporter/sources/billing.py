"""Billing exports: read FOCUS 1.0/1.2, AWS CUR 2.0 and GCP detailed exports into one line model.

CSV, gzipped or not. Every problem names the file, line and column; rows are never dropped
silently: ignored rows are counted with their reason (tax, a zero-cost negation, ...).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from exporter.core.window import parse_instant
from exporter.vocab.errors import ConfigError

CATEGORIES = ("compute", "storage", "load_balancer", "network", "other")


@dataclass(frozen=True)
class BillLine:
    file: str
    line: int
    start: float  # charge period start (inclusive), unix seconds
    end: float  # charge period end (exclusive)
    cost: float  # effective cost: amortised RI/Savings Plan, after credits and refunds
    currency: str
    resource: str  # normalised id: i-0abc, vol-0abc, a disk or load balancer name; "" if none
    service: str
    category: str  # one of CATEGORIES
    tags: dict[str, str] = field(default_factory=dict)
    raw_resource: str = ""  # the id as the bill wrote it (ARNs keep load balancer names)
    list_cost: float | None = None  # at public on-demand prices: list minus effective is the discount
    invoiced: float | None = None  # cash basis (FOCUS BilledCost), what the invoice for the period says
    quantity: float | None = None  # FOCUS PricingQuantity in `unit` (Hours for an instance)
    unit: str = ""
    # Who bills it (/cloudCost's provider, invoiceEntityID and accountID): FOCUS ProviderName,
    # BillingAccountId and SubAccountId; CUR's payer and usage accounts; GCP's billing account and project.
    provider: str = ""
    invoice_entity: str = ""
    account: str = ""
    nat: bool = False  # a NAT gateway's hours or bytes (spread by internet-bound bytes when reconciled)


@dataclass
class Bill:
    lines: list[BillLine] = field(default_factory=list)
    ignored: Counter[str] = field(default_factory=Counter)  # reason -> rows
    # The provider's own Kubernetes split (AWS Split Cost Allocation Data, GKE cost allocation):
    # namespace -> (split cost, unused cost), for comparison with chargeback's namespaces.
    provider_split: dict[str, list[float]] = field(default_factory=dict)

    def add_split(self, namespace: str, split: float, unused: float) -> None:
        acc = self.provider_split.setdefault(namespace, [0.0, 0.0])
        acc[0] += split
        acc[1] += unused

    @property
    def currency(self) -> str:
        return self.lines[0].currency if self.lines else ""


def resource_id(raw: str) -> str:
    """The last path or ARN segment: arn:aws:ec2:...:instance/i-0abc and aws:///zone/i-0abc -> i-0abc."""
    raw = raw.strip().rstrip("/")
    return raw.rsplit("/", 1)[-1].rsplit(":", 1)[-1] if raw else ""


def _parquet_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Parquet exports, when the optional pyarrow is installed (pip install 'chargeback[parquet]')."""
    try:
        import pyarrow.parquet as pq
    except ImportError as e:
        raise ConfigError(f"bill {path}: reading Parquet needs pyarrow: pip install 'chargeback[parquet]'") from e
    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is a ValueError, ArrowIOError an OSError
        raise ConfigError(f"bill {path}: not a readable Parquet file: {str(e).splitlines()[0][:200]}") from e
    rows = [{k: "" if v is None else (json.dumps(v) if isinstance(v, (list, dict)) else str(v))
             for k, v in r.items()} for r in table.to_pylist()]
    return list(table.column_names), rows


def _records(path: Path) -> tuple[list[str], Iterator[dict[str, str]]]:
    """Header and rows of a CSV (optionally gzipped) or Parquet export, streamed."""
    if path.suffix == ".parquet":
        columns, table_rows = _parquet_rows(path)
        return columns, iter(table_rows)
    try:
        fh = _open(path)
        reader = csv.DictReader(fh)
        header = list(reader.fieldnames or [])
    except (OSError, EOFError, UnicodeDecodeError, csv.Error, zlib.error) as e:
        raise _unreadable(path, e, 1) from e

    def streamed() -> Iterator[dict[str, str]]:
        with fh:
            try:
                yield from reader
            except (OSError, EOFError, UnicodeDecodeError, csv.Error, zlib.error) as e:
                raise _unreadable(path, e, reader.line_num + 1) from e

    return header, streamed()


def _unreadable(path: Path, e: Exception, line: int) -> ConfigError:
    """A bill that is not UTF-8 CSV (or a truncated .gz) is one line naming the file, never a traceback."""
    if isinstance(e, csv.Error):  # the reader knows the line; decoding errors are only known per block
        return ConfigError(f"{path.name}:{line}: not valid CSV: {e}")
    if isinstance(e, UnicodeDecodeError):
        return ConfigError(f"bill {path}: not UTF-8 text")
    if isinstance(e, OSError) and e.strerror:
        return ConfigError(f"bill {path}: cannot read: {e.strerror}")
    return ConfigError(f"bill {path}: unreadable: {str(e).splitlines()[0] if str(e) else type(e).__name__}")


def _open(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path), encoding="utf-8", newline="")
    return path.open(newline="", encoding="utf-8")


class _Row:
    """Typed access to one CSV row with errors that name file, line and column."""

    def __init__(self, path: Path, line: int, row: dict[str, str]) -> None:
        self.path, self.line, self.row = path, line, row

    def err(self, column: str, why: str) -> ConfigError:
        return ConfigError(f"{self.path.name}:{self.line}: column {column}: {why}")

    def text(self, column: str) -> str:
        return (self.row.get(column) or "").strip()

    def number(self, column: str, default: float | None = None) -> float:
        raw = self.text(column)
        if not raw:
            if default is not None:
                return default
            raise self.err(column, "empty")
        try:
            return float(raw)
        except ValueError as e:
            raise self.err(column, f"not a number: {raw!r}") from e

    def optional(self, column: str) -> float | None:
        """A number from a column the export may leave out or leave empty."""
        return self.number(column) if self.text(column) else None

    def time(self, column: str) -> float:
        raw = self.text(column)
        try:
            return parse_instant(raw)
        except ConfigError as e:
            raise self.err(column, f"not a timestamp: {raw!r}") from e

    def tags(self, column: str) -> dict[str, str]:
        raw = self.text(column)
        if not raw:
            return {}
        try:
            value = json.loads(raw)
        except ValueError as e:
            raise self.err(column, "not JSON") from e
        if isinstance(value, list):  # GCP: [{"key": .., "value": ..}]
            return {str(d.get("key")): str(d.get("value")) for d in value if isinstance(d, dict)}
        return {str(k): str(v) for k, v in value.items()}


FORMATS = {
    "focus": ("EffectiveCost", "BilledCost", "ListCost", "ChargePeriodStart", "ChargePeriodEnd", "ChargeCategory",
              "ResourceId", "ServiceName", "BillingCurrency"),
    "cur2": ("line_item_line_item_type", "line_item_unblended_cost", "line_item_resource_id",
             "line_item_usage_start_date", "line_item_usage_end_date", "line_item_currency_code",
             "line_item_product_code", "line_item_usage_type"),
    "gcp": ("cost", "currency", "usage_start_time", "usage_end_time", "service.description", "sku.description",
            "resource.global_name"),
}


def _focus(r: _Row) -> tuple[str, BillLine] | str:
    charge = r.text("ChargeCategory")
    if charge == "Tax":
        return "tax line"
    service, svc_cat = r.text("ServiceName"), r.text("ServiceCategory")
    res = resource_id(r.text("ResourceId"))
    return "", BillLine(str(r.path), r.line, r.time("ChargePeriodStart"), r.time("ChargePeriodEnd"),
                        r.number("EffectiveCost"), r.text("BillingCurrency"), res, service,
                        _category(service, svc_cat, res, ""), r.tags("Tags") if "Tags" in r.row else {},
                        r.text("ResourceId"), r.optional("ListCost"), r.optional("BilledCost"),
                        r.optional("PricingQuantity"), r.text("PricingUnit"),
                        provider=r.text("ProviderName") or r.text("Provider"),
                        invoice_entity=r.text("BillingAccountId"), account=r.text("SubAccountId"),
                        nat=_is_nat(f"{service} {r.text('ResourceType')} {r.text('ChargeDescription')}",
                                    r.text("ResourceId")))


SPLIT_ROW = "EKS split-cost row (compared per namespace; its parent instance line carries the cost)"


def _cur(r: _Row) -> tuple[str, BillLine] | str:
    kind = r.text("line_item_line_item_type")
    if r.text("split_line_item_parent_resource_id"):
        return SPLIT_ROW
    if kind == "Tax":
        return "tax line"
    if kind in ("SavingsPlanNegation", "SavingsPlanRecurringFee", "RIFee", "SavingsPlanUpfrontFee"):
        return f"{kind} (already amortised into the covered usage's effective cost)"
    cost = r.number("line_item_unblended_cost")
    invoiced: float | None = cost
    if kind in ("SavingsPlanCoveredUsage", "DiscountedUsage"):
        invoiced = None  # covered usage is paid through the plan's or reservation's fee lines
    if kind == "SavingsPlanCoveredUsage":
        cost = r.number("savings_plan_savings_plan_effective_cost")
    elif kind == "DiscountedUsage":
        cost = r.number("reservation_effective_cost")
    res = resource_id(r.text("line_item_resource_id"))
    usage = r.text("line_item_usage_type")
    tags = r.tags("resource_tags") if "resource_tags" in r.row else {}
    return "", BillLine(str(r.path), r.line, r.time("line_item_usage_start_date"),
                        r.time("line_item_usage_end_date"), cost, r.text("line_item_currency_code"), res,
                        r.text("line_item_product_code"), _category(r.text("line_item_product_code"), "", res, usage),
                        tags, r.text("line_item_resource_id"), r.optional("pricing_public_on_demand_cost"), invoiced,
                        r.optional("line_item_usage_amount"), r.text("pricing_unit"), provider="AWS",
                        invoice_entity=r.text("bill_payer_account_id"), account=r.text("line_item_usage_account_id"),
                        nat=_is_nat(usage, r.text("line_item_resource_id")))


def _gcp(r: _Row) -> tuple[str, BillLine] | str:
    if r.text("cost_type") == "tax":
        return "tax line"
    credits = 0.0
    if r.text("credits"):
        try:
            credits = sum(float(c.get("amount", 0)) for c in json.loads(r.text("credits")))
        except (ValueError, AttributeError, TypeError) as e:
            raise r.err("credits", "not a JSON list of {amount}") from e
    res = resource_id(r.text("resource.global_name"))
    service, sku = r.text("service.description"), r.text("sku.description")
    cost = r.number("cost") + credits
    return "", BillLine(str(r.path), r.line, r.time("usage_start_time"), r.time("usage_end_time"),
                        cost, r.text("currency"), res, service,
                        _category(service, "", res, sku), r.tags("labels") if "labels" in r.row else {},
                        r.text("resource.global_name"), r.optional("cost_at_list"), cost,
                        r.optional("usage.amount_in_pricing_units"), r.text("usage.pricing_unit"), provider="GCP",
                        invoice_entity=r.text("billing_account_id"), account=r.text("project.id"),
                        nat=_is_nat(f"{service} {sku}", r.text("resource.global_name")))


def _is_nat(text: str, raw_resource: str) -> bool:
    """A NAT gateway line: AWS usage types `<region>-NatGateway-Hours/-Bytes` and `natgateway/nat-...` ids, GCP's
    "Cloud NAT" SKUs, Azure's "NAT Gateway" service or resource type."""
    text = f"{text} {raw_resource}".lower()
    return (any(w in text for w in ("natgateway", "nat gateway", "nat-gateway", "cloud nat"))
            or resource_id(raw_resource).startswith("nat-"))


def _category(service: str, service_category: str, res: str, usage: str) -> str:
    text = f"{service} {service_category} {usage}".lower()
    if "load balanc" in text or "elb" in text or res.startswith(("loadbalancer", "app/", "net/")):
        return "load_balancer"
    if res.startswith(("vol-", "pvc-", "disk-")) or "storage" in text or "ebs" in text or "persistent disk" in text:
        return "storage"
    if any(w in text for w in ("datatransfer", "data transfer", "egress", "natgateway", "nat gateway", "network")):
        return "network"
    if res.startswith("i-") or "compute" in text or "boxusage" in text or "virtual machines" in text:
        return "compute"
    return "other"


_MARKERS = {"focus": "ChargePeriodStart", "cur2": "line_item_line_item_type", "gcp": "usage_start_time"}
_PARSERS = {"focus": _focus, "cur2": _cur, "gcp": _gcp}


def _detect(path: Path, header: set[str]) -> str:
    """Which export a file is, by a column only that format has; its required columns all present."""
    fmt = next((f for f, marker in _MARKERS.items() if marker in header), None)
    if fmt is None:
        raise ConfigError(f"bill {path}: not a FOCUS, CUR 2.0 or GCP billing export (header: "
                          f"{', '.join(sorted(header))[:200]})")
    missing = [c for c in FORMATS[fmt] if c not in header]
    if missing:
        raise ConfigError(f"bill {path}: {fmt} export without column {missing[0]}")
    return fmt


def bill_format(path: str | Path) -> str:
    """focus, cur2 or gcp: which export a file is (/cloudCost/status names it)."""
    columns, rows = _records(Path(path))
    next(rows, None)  # enters the reader's `with`, so that closing it closes the file
    getattr(rows, "close", lambda: None)()
    return _detect(Path(path), set(columns))


def _note_split(bill: Bill, parsed: _Row, row: dict[str, str]) -> None:
    """A CUR split-cost row: what AWS's Split Cost Allocation gave the namespace."""
    tags = parsed.tags("resource_tags") if "resource_tags" in row else {}
    namespace = tags.get("aws:eks:namespace") or tags.get("resource_tags_aws_eks_namespace", "")
    bill.add_split(namespace or "(no namespace tag)", parsed.number("split_line_item_split_cost", 0.0),
                   parsed.number("split_line_item_unused_cost", 0.0))


def _add_line(bill: Bill, line: BillLine, where: str, seen: dict[tuple[str, float, float, str, float], str]) -> None:
    """One currency per bill, and no line twice (the same file passed twice, or overlapping exports)."""
    if bill.lines and line.currency != bill.currency:
        raise ConfigError(f"{where}: column currency: {line.currency!r} mixed with "
                          f"{bill.currency!r}; reconcile one currency at a time")
    if not line.currency:
        raise ConfigError(f"{where}: column currency: empty")
    key = (line.resource, line.start, line.end, line.service, line.cost)
    if key in seen and line.resource:
        raise ConfigError(f"{where}: duplicate of {seen[key]} (same resource, period and cost)")
    seen[key] = where
    bill.lines.append(line)


def read_bill(paths: list[str | Path]) -> Bill:
    """Read and validate billing files; one currency, no duplicate lines, no file covering another's period."""
    bill = Bill()
    seen: dict[tuple[str, float, float, str, float], str] = {}
    periods: list[tuple[float, float, str, str]] = []  # (start, end, file, format)
    for raw_path in paths:
        path = Path(raw_path)
        if not path.is_file():
            raise ConfigError(f"bill {path}: cannot read: no such file")
        columns, reader = _records(path)
        fmt = _detect(path, set(columns))
        lo, hi = float("inf"), float("-inf")
        for n, row in enumerate(reader, start=2):
            parsed = _Row(path, n, row)
            out = _PARSERS[fmt](parsed)
            if out == SPLIT_ROW:
                _note_split(bill, parsed, row)
            if isinstance(out, str):
                bill.ignored[out] += 1
                continue
            _reason, line = out
            if line.tags.get("k8s-namespace"):  # GKE cost allocation labels the namespace's share
                bill.add_split(line.tags["k8s-namespace"], line.cost, 0.0)
            _add_line(bill, line, f"{path.name}:{n}", seen)
            lo, hi = min(lo, line.start), max(hi, line.end)
        for p_start, p_end, other, ofmt in periods:
            if ofmt == fmt and lo < p_end and p_start < hi:
                raise ConfigError(f"bill {path}: its period overlaps {other}'s; pass each period once")
        if hi > lo:
            periods.append((lo, hi, str(path), fmt))
    return bill
