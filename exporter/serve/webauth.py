"""Optional TLS and authentication for serve, the way Prometheus exporters do it.

The web config file follows the exporter-toolkit convention (`--web.config.file`), so the same file
and the same bcrypt hashes work for node_exporter and for us:

    tls_server_config: {cert_file: server.crt, key_file: server.key}
    basic_auth_users: {prometheus: $2y$10$...}

A bearer token file (`api.bearerTokenFile`) is the alternative for ServiceMonitors that pass a
token. Either credential is accepted when both are set; paths in `api.openPaths` need none.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import bcrypt
from pydantic import Field

from exporter.config.model import StrictModel, read_yaml, validated
from exporter.vocab.errors import ConfigError

REALM = "chargeback"
# Checked against when the user is unknown, so a wrong user name costs the same time as a wrong password.
_DUMMY_HASH = b"$2b$10$" + b"." * 53
_CLIENT_AUTH = {"NoClientCert": ssl.CERT_NONE, "RequestClientCert": ssl.CERT_OPTIONAL,
                "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL, "RequireAndVerifyClientCert": ssl.CERT_REQUIRED}
_TLS_VERSIONS = {"TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}


class TlsServerConfig(StrictModel):
    cert_file: str
    key_file: str
    client_auth_type: Literal["NoClientCert", "RequestClientCert", "VerifyClientCertIfGiven",
                              "RequireAndVerifyClientCert"] = "NoClientCert"
    client_ca_file: str | None = None
    min_version: Literal["TLS12", "TLS13"] = "TLS12"


class WebConfig(StrictModel):
    """The subset of exporter-toolkit's web config we honour; any other key is an error, not ignored."""

    tls_server_config: TlsServerConfig | None = None
    basic_auth_users: dict[str, str] = Field(default_factory=dict)


def load_web_config(path: str) -> WebConfig:
    return validated(WebConfig, read_yaml(path, "web config"), f"web config {path}")


def ssl_context(tls: TlsServerConfig, base: Path) -> ssl.SSLContext:
    """A server context from the file's TLS section; relative paths are relative to the web config file."""
    def resolve(p: str) -> str:
        return str(base / p)

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = _TLS_VERSIONS[tls.min_version]
    try:
        ctx.load_cert_chain(resolve(tls.cert_file), resolve(tls.key_file))
        if tls.client_ca_file:
            ctx.load_verify_locations(resolve(tls.client_ca_file))
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(f"web config tls_server_config: cannot load certificate or key: "
                          f"{getattr(e, 'strerror', None) or e}") from e
    ctx.verify_mode = _CLIENT_AUTH[tls.client_auth_type]
    if ctx.verify_mode != ssl.CERT_NONE and not tls.client_ca_file:
        raise ConfigError(f"web config tls_server_config: client_auth_type {tls.client_auth_type} "
                          "needs client_ca_file")
    return ctx


@dataclass
class TokenFile:
    """A bearer token re-read when the file changes (a rotated Kubernetes Secret)."""

    path: Path
    _seen: tuple[float, int] | None = None
    _token: bytes = b""

    def token(self) -> bytes:
        try:
            st = self.path.stat()
            if (st.st_mtime, st.st_size) != self._seen:
                token = self.path.read_bytes().strip()
                if not token:
                    raise ConfigError(f"api.bearerTokenFile {self.path} is empty")
                self._token, self._seen = token, (st.st_mtime, st.st_size)
        except OSError as e:
            raise ConfigError(f"api.bearerTokenFile {self.path}: {e.strerror}") from e
        return self._token


@dataclass
class Auth:
    """Who may call which path. With no users and no token, every request is let in."""

    users: dict[str, bytes] = field(default_factory=dict)
    token: TokenFile | None = None
    open_paths: frozenset[str] = frozenset()
    _verified: set[bytes] = field(default_factory=set)  # digests of credentials bcrypt already accepted
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def enabled(self) -> bool:
        return bool(self.users) or self.token is not None

    def required(self, path: str) -> bool:
        return self.enabled and path not in self.open_paths

    def challenges(self) -> list[str]:
        """The WWW-Authenticate values of a 401, one per accepted scheme."""
        out = []
        if self.users:
            out.append(f'Basic realm="{REALM}"')
        if self.token is not None:
            out.append(f'Bearer realm="{REALM}"')
        return out

    def allows(self, authorization: str | None) -> bool:
        scheme, _, value = (authorization or "").strip().partition(" ")
        if scheme.lower() == "bearer" and self.token is not None:
            return hmac.compare_digest(value.strip().encode(), self.token.token())
        if scheme.lower() == "basic" and self.users:
            try:
                user, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return False
            return bool(sep) and self._password_ok(user, password)
        return False

    def _password_ok(self, user: str, password: str) -> bool:
        """bcrypt is deliberately slow (~0.1 s): remember accepted credentials, as exporter-toolkit does."""
        hashed = self.users.get(user, _DUMMY_HASH)
        digest = hashlib.sha256(b"\0".join((user.encode(), password.encode(), hashed))).digest()
        with self._lock:
            if digest in self._verified:
                return user in self.users
        pw = password.encode()
        try:
            ok = len(pw) <= 72 and bcrypt.checkpw(pw, hashed) and user in self.users
        except ValueError:
            ok = False
        if ok:
            with self._lock:
                self._verified.add(digest)
        return ok


def load_auth(web_config: str | None, bearer_token_file: str | None, open_paths: list[str]
              ) -> tuple[Auth, ssl.SSLContext | None]:
    """The authenticator and TLS context from the web config file and the token file; errors name them."""
    users: dict[str, bytes] = {}
    context = None
    if web_config:
        wc = load_web_config(web_config)
        for user, hashed in wc.basic_auth_users.items():
            try:
                bcrypt.checkpw(b"", hashed.encode())
            except ValueError as e:
                raise ConfigError(f"web config {web_config}: basic_auth_users.{user}: not a bcrypt hash "
                                  "(make one with `htpasswd -nBC 10 \"\" | tr -d ':'`)") from e
            users[user] = hashed.encode()
        if wc.tls_server_config is not None:
            context = ssl_context(wc.tls_server_config, Path(web_config).parent)
    token = None
    if bearer_token_file:
        token = TokenFile(Path(bearer_token_file))
        token.token()  # fail at start, not at the first request
    return Auth(users, token, frozenset(open_paths)), context
