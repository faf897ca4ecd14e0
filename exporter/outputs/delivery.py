"""Report delivery: Slack incoming webhooks, SMTP email and generic JSON webhooks, with retries.

Each team's destinations get only that team's report; finance gets the whole report. A
failed destination is reported and the others are still delivered.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
import time
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from exporter.config.schema import Destination, Reports, SecretRef
from exporter.outputs.report import Report
from exporter.outputs.reportformat import chart_png, slack_blocks, to_csv, to_json, to_markdown
from exporter.outputs.reporthtml import to_html
from exporter.vocab.errors import ChargebackError
from exporter.vocab.redact import redact, redact_url

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    destination: str  # e.g. "team payments: slack"
    ok: bool
    detail: str = ""


def _session(cfg: Reports) -> requests.Session:
    """Retries with exponential backoff on 429 and 5xx (honouring Retry-After), and on connection errors."""
    retry = Retry(total=cfg.retries, connect=cfg.retries, read=cfg.retries, status=cfg.retries,
                  backoff_factor=cfg.backoff, status_forcelist=(429, 500, 502, 503, 504),
                  allowed_methods=frozenset({"POST"}), respect_retry_after_header=True, raise_on_status=False)
    s = requests.Session()
    s.mount("http://", HTTPAdapter(max_retries=retry))
    s.mount("https://", HTTPAdapter(max_retries=retry))
    return s


def _post(session: requests.Session, url: str, payload: object, timeout: float) -> str:
    resp = session.post(url, json=payload, timeout=timeout)
    if resp.status_code >= 300:
        # The body may echo the request URL (the credential): redacted like everything else.
        body = " ".join(resp.text[:200].split())
        raise ChargebackError(f"HTTP {resp.status_code} after retries: {redact(body, [url])}")
    return f"HTTP {resp.status_code}"


def email_message(report: Report, sender: str, to: list[str], subject: str) -> EmailMessage:
    """Plain-text and HTML alternatives, the chart as an inline PNG, the CSV as an attachment."""
    msg = EmailMessage()
    msg["Subject"], msg["From"], msg["To"] = subject, sender, ", ".join(to)
    msg.set_content(to_markdown(report))
    cid = make_msgid(domain="chargeback")
    msg.add_alternative(to_html(report, chart_cid=cid[1:-1]), subtype="html")
    html_part = msg.get_body(preferencelist=("html",))
    assert isinstance(html_part, EmailMessage)
    html_part.add_related(chart_png(report), "image", "png", cid=cid, filename="daily-cost.png")
    msg.add_attachment(to_csv(report).encode(), maintype="text", subtype="csv", filename="cost-report.csv")
    return msg


def _send_email(cfg: Reports, msg: EmailMessage) -> str:
    smtp = cfg.smtp
    if smtp is None:
        raise ChargebackError("email destination configured but reports.smtp is not")
    last: Exception | None = None
    for attempt in range(cfg.retries + 1):
        try:
            with smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout) as s:
                if smtp.starttls:
                    # smtplib's default context does not verify the server; a default context does.
                    context = ssl.create_default_context(cafile=smtp.caFile)
                    if not smtp.verify:
                        context.check_hostname = False
                        context.verify_mode = ssl.CERT_NONE
                    s.starttls(context=context)
                if smtp.username:
                    s.login(smtp.username, smtp.password.value() if smtp.password else "")
                s.send_message(msg)
            return f"sent to {msg['To']}"
        except (smtplib.SMTPException, OSError) as e:
            last = e
            if isinstance(e, smtplib.SMTPAuthenticationError):
                break
            time.sleep(cfg.backoff * 2**attempt)
    raise ChargebackError(f"SMTP {smtp.host}:{smtp.port}: {redact(str(last))}")


def plan(report: Report, cfg: Reports) -> list[tuple[str, Destination, Report]]:
    """(who, where, what): each configured team gets its own slice, finance the whole report."""
    names = {g.name for g in report.groups}
    out = [(f"team {team}", dest, report.only(team)) for team, dest in sorted(cfg.teams.items()) if team in names]
    missing = sorted(set(cfg.teams) - names)
    if missing:
        log.warning("no cost in this window for configured team(s) %s: nothing sent to them", ", ".join(missing))
    if cfg.finance is not None:
        out.append(("finance", cfg.finance, report))
    return out


def deliver(report: Report, cfg: Reports, dry_run: bool = False) -> list[Outcome]:
    session = _session(cfg)
    outcomes = []
    for who, dest, part in plan(report, cfg):
        subject = f"[chargeback] {who}: {part.groups_total:,.2f} {part.currency}, " \
                  f"{report.window.seconds // 86400 or 1}-day report"
        channels: list[tuple[str, object]] = []
        if dest.slack:
            channels.append(("slack", dest.slack))
        if dest.email:
            channels.append(("email", dest.email))
        if dest.webhook:
            channels.append(("webhook", dest.webhook))
        for kind, target in channels:
            name = f"{who}: {kind}"
            secrets: list[str] = []  # the webhook URL is the credential: never in a message
            try:
                if isinstance(target, SecretRef):
                    secrets.append(target.value())
                    where = redact_url(secrets[0])
                else:
                    where = ", ".join(dest.email)
                if dry_run:
                    detail = f"would send {len(part.groups)} group(s), total {part.groups_total:.2f}, to {where}"
                elif kind == "slack":
                    detail = _post(session, secrets[0], slack_blocks(part, cfg.grafanaURL), cfg.timeout)
                elif kind == "webhook":
                    detail = _post(session, secrets[0], {"subject": subject, "report": _json(part)}, cfg.timeout)
                else:
                    sender = cfg.smtp.sender if cfg.smtp else "chargeback@localhost"
                    detail = _send_email(cfg, email_message(part, sender, list(dest.email), subject))
                outcomes.append(Outcome(name, True, redact(detail, secrets)))
            except (ChargebackError, requests.RequestException) as e:
                # requests' text names the request path ("with url: /services/T/B/SECRET"): redact it.
                message = redact(str(e), secrets)
                log.error("delivery to %s failed: %s", name, message)
                outcomes.append(Outcome(name, False, message.splitlines()[0][:300]))
    return outcomes


def _json(report: Report) -> object:
    import json

    return json.loads(to_json(report))
