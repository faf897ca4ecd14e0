"""Redaction: URLs and known secrets are masked before anything is logged, printed or put into an error.

A webhook URL is itself the credential (Slack's `/services/T/B/SECRET`, Teams' `/webhookb2/...`,
a `?token=`), and a Prometheus URL may carry `user:password@`. Text from anywhere (our
messages, `requests`/`urllib3` exception text, third-party log lines) goes through `redact`.

Secrets read through the config (`SecretRef.value()`, the bearer token file) are remembered
here, so a generic webhook whose path is the secret is masked too, wherever it shows up.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, urlsplit

MASK = "***"

# scheme://userinfo@ : keep the user name, mask the password; a bare userinfo is a token, masked whole.
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)([^/?#\s'\"<>]*)@")
# Paths whose remainder is the credential: Slack (services, workflow triggers), Microsoft Teams /
# Office 365 connectors, Discord. Matched in full URLs and in bare paths (urllib3's "with url: /...").
# Slack's need two more segments (/services/T/B/SECRET), so a Kubernetes .../services/<name> is left alone.
_WEBHOOK_PATH = re.compile(r"(?i)(/(?:services|triggers)/)[^\s?#'\"<>()/]+/[^\s?#'\"<>()]+"
                           r"|(/(?:webhookb2|webhook|api/webhooks)/)[^\s?#'\"<>()]+")
# Query parameters whose value is a credential: token, access_token, api_key, key, secret, password,
# sig/signature (Azure SAS, Power Automate), code (Azure Functions), X-Amz-Credential, auth ...
_QUERY = re.compile(r"(?i)([?&;](?:[\w.\-]*(?:token|key|secret|passw|pwd|sig|auth|credential|code|session)"
                    r"[\w.\-]*)=)[^&#\s'\"<>]*")

_MIN_SECRET = 4  # shorter strings would mask ordinary words; nobody's credential is that short
# Known secrets as regex alternatives. A whole secret is masked wherever it appears; a piece of a secret
# URL (its path, a query value) only where it stands alone, so a path `/hook` does not eat `//hookuser`.
_known: set[str] = set()
_lock = threading.Lock()
_PATH_END = r"(?![\w.~%+/-])"


def _userinfo(m: re.Match[str]) -> str:
    user, sep, _password = m.group(2).partition(":")
    return f"{m.group(1)}{user}:{MASK}@" if sep else f"{m.group(1)}{MASK}@"


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with every URL credential and every known or given secret replaced by `***`."""
    out = _USERINFO.sub(_userinfo, str(text))
    out = _WEBHOOK_PATH.sub(lambda m: (m.group(1) or m.group(2)) + MASK, out)
    out = _QUERY.sub(lambda m: m.group(1) + MASK, out)
    with _lock:
        every = _known | {p for s in secrets for p in _parts(s)}
    if every:  # longest first: a URL before its own path
        out = re.sub("|".join(sorted(every, key=len, reverse=True)), MASK, out)
    return out


def redact_url(url: str, secrets: Iterable[str] = ()) -> str:
    """One URL, redacted, keeping where it points: `http://user:pw@host/services/T/B/X?token=t` ->
    `http://user:***@host/services/***?token=***`; a generic webhook whose path is a known secret -> `http://host/***`.
    """
    text = url.strip()
    try:
        u = urlsplit(text)
    except ValueError:
        return redact(text, secrets)
    if not u.scheme or not u.netloc:
        return redact(text, secrets)
    head = f"{u.scheme}://{u.netloc}"
    tail = text[len(head):]
    clean = redact(tail, secrets)
    if clean != tail and not clean.startswith("/"):
        clean = "/" + clean
    return redact(head, secrets) + clean


def _parts(secret: str) -> set[str]:
    """Patterns for the secret and, for a URL, the pieces that leak on their own: path, password, values."""
    secret = secret.strip()
    whole = {secret, quote(secret, safe="")}
    pieces: set[str] = set()  # must stand alone: not inside a longer path or word
    if "://" in secret:
        try:
            u = urlsplit(secret)
        except ValueError:
            u = None
        if u is not None:
            whole.add(u.password or u.username or "")
            if len(u.path) >= _MIN_SECRET:
                pieces.add(re.escape(u.path) + (re.escape(f"?{u.query}") if u.query else "") + _PATH_END)
                pieces.add(r"(?<!/)" + re.escape(u.path) + _PATH_END)
            for pair in u.query.split("&"):
                value = pair.partition("=")[2]
                if len(value) >= _MIN_SECRET:
                    pieces.add(r"(?<![\w.~%+-])" + re.escape(value) + r"(?![\w.~%+-])")
    return {re.escape(w) for w in whole if len(w) >= _MIN_SECRET} | pieces


def remember(secret: str) -> str:
    """Register a secret read at run time (a webhook URL, a password, a token); returns it unchanged."""
    parts = _parts(secret)
    with _lock:
        _known.update(parts)
    return secret


_factory_installed = False


def install_log_redaction() -> None:
    """Redact every log record of this process as it is created, whichever library logs it.

    A record factory (not a handler filter) so that every handler sees the redacted text,
    including urllib3's retry warnings and debug lines, which print the request path.
    """
    global _factory_installed
    with _lock:
        if _factory_installed:
            return
        _factory_installed = True
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a malformed call; logging reports it at emit time as usual
            return record
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return record

    logging.setLogRecordFactory(factory)
