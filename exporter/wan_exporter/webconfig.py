"""``--web.config.file``: TLS, basic auth, response headers and a rate limit.

The file has the Prometheus exporter-toolkit format (exporter-toolkit
``docs/web-configuration.md``), so one file serves this exporter and node_exporter alike and
``promtool check web-config`` validates it. prometheus_client has no basic auth, hence this
module: a WSGI middleware for users, headers and the rate limit, and an ``ssl.SSLContext``
that :mod:`wan_exporter.server` uses for every new connection.

Like exporter-toolkit, the file and the certificates it names are re-read while running, so
certificates and users rotate without a restart: their mtimes are checked at most once per
``check_interval`` on the request path, a change is loaded in full and swapped in at once,
and a broken file keeps the last good one (logged). Whether TLS is on is decided at start.

Where Python's ``ssl`` module cannot do what Go's ``crypto/tls`` does, the file is refused
with a clear error rather than served with weaker settings (see ``CLIENT_AUTH``).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import difflib
import hashlib
import hmac
import ipaddress
import logging
import os
import re
import secrets
import ssl
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping


from .config import ConfigError, load_yaml_mapping
from .units import parse_duration

log = logging.getLogger(__name__)

WSGIApp = Callable[[dict, Callable], Iterable[bytes]]

TOP_KEYS = ("tls_server_config", "http_server_config", "basic_auth_users", "rate_limit")
TLS_KEYS = (
    "cert", "key", "client_ca", "cert_file", "key_file", "client_auth_type", "client_ca_file",
    "client_allowed_sans", "min_version", "max_version", "cipher_suites", "prefer_server_cipher_suites",
    "curve_preferences",
)
# exporter-toolkit's IsEnabled(): any of these turns TLS on.
TLS_ENABLING_KEYS = ("cert", "key", "client_ca", "cert_file", "key_file", "client_ca_file", "client_auth_type")
HTTP_KEYS = ("http2", "headers")
RATE_KEYS = ("interval", "burst")

# Go's tls.ClientAuthType -> Python verify mode. RequestClientCert asks for a certificate that
# it then ignores; Python cannot ask without verifying, so it does not ask: the same clients
# get in. RequireAnyClientCert (accept any certificate unverified) cannot be expressed at all.
CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "RequestClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
UNSUPPORTED_CLIENT_AUTH = ("RequireAnyClientCert", "RequireClientCert")
VERIFYING_CLIENT_AUTH = ("VerifyClientCertIfGiven", "RequireAndVerifyClientCert")

TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}

# Go's tls.CipherSuites() names -> OpenSSL names. TLS 1.3 suites are accepted, as in Go, and
# (as in Go) are not configurable: they only matter up to TLS 1.2.
CIPHER_SUITES: dict[str, str | None] = {
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_AES_128_GCM_SHA256": None,
    "TLS_AES_256_GCM_SHA384": None,
    "TLS_CHACHA20_POLY1305_SHA256": None,
}
CURVES = {"CurveP256": "prime256v1", "CurveP384": "secp384r1", "CurveP521": "secp521r1", "X25519": "X25519"}

# exporter-toolkit's extraHTTPHeaders: the only headers that may be configured, and for some
# the only values.
HEADERS: dict[str, tuple[str, ...] | None] = {
    "Strict-Transport-Security": None,
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": None,
    "Content-Security-Policy": None,
}

BCRYPT_RE = re.compile(r"^\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}$")
BCRYPT_MAX_PASSWORD = 72  # bcrypt only reads this many bytes (Go and htpasswd truncate too)
WWW_AUTHENTICATE = 'Basic realm="wan-exporter", charset="UTF-8"'


# --------------------------------------------------------------------------- typed config


@dataclass(frozen=True)
class TLSSettings:
    cert_file: str | None = None
    key_file: str | None = None
    cert: str | None = field(default=None, repr=False)
    key: str | None = field(default=None, repr=False)
    client_ca_file: str | None = None
    client_ca: str | None = field(default=None, repr=False)
    client_auth_type: str = "NoClientCert"
    client_allowed_sans: tuple[str, ...] | None = None
    min_version: str = "TLS12"
    max_version: str = "TLS13"
    cipher_suites: tuple[str, ...] = ()
    prefer_server_cipher_suites: bool = True
    curve_preferences: tuple[str, ...] = ()


@dataclass(frozen=True)
class RateLimit:
    interval: float  # seconds between requests on average
    burst: int


@dataclass(frozen=True)
class WebConfig:
    path: str
    tls: TLSSettings | None = None
    http2: bool = True  # accepted for compatibility; this server speaks HTTP/1.x only
    headers: tuple[tuple[str, str], ...] = ()
    users: Mapping[str, str] = field(default_factory=dict, repr=False)
    rate_limit: RateLimit | None = None

    @property
    def files(self) -> tuple[str, ...]:
        """The files this config reads besides itself: watched for rotation."""
        if self.tls is None:
            return ()
        return tuple(f for f in (self.tls.cert_file, self.tls.key_file, self.tls.client_ca_file) if f)


def _did_you_mean(value: object, options: Iterable[str]) -> str:
    opts = list(options)
    close = difflib.get_close_matches(str(value), opts, n=1)
    if not close:  # header names: a case slip is the usual mistake
        close = [o for o in opts if o.lower() == str(value).lower()][:1]
    return f" (did you mean '{close[0]}'?)" if close else ""


class _Parser:
    """Walks the raw YAML collecting every problem with its path."""

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = base_dir
        self.errors: list[str] = []

    def err(self, path: str, msg: str) -> None:
        self.errors.append(f"{path}: {msg}")

    def mapping(self, value: Any, path: str, keys: tuple[str, ...]) -> dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.err(path, "expected a mapping")
            return {}
        for k in value:
            if k not in keys:
                self.err(f"{path}.{k}", f"unknown key{_did_you_mean(k, keys)}")
        return value

    def string(self, raw: dict, key: str, path: str) -> str | None:
        v = raw.get(key)
        if v is None:
            return None
        if not isinstance(v, str):
            self.err(f"{path}.{key}", "expected a string")
            return None
        return v or None  # "" means unset, as in Go

    def boolean(self, raw: dict, key: str, path: str, default: bool) -> bool:
        v = raw.get(key)
        if v is None:
            return default
        if not isinstance(v, bool):
            self.err(f"{path}.{key}", "expected true or false")
            return default
        return v

    def string_list(self, raw: dict, key: str, path: str) -> tuple[str, ...] | None:
        v = raw.get(key)
        if v is None:
            return None
        if not isinstance(v, list):
            self.err(f"{path}.{key}", "expected a list of strings")
            return None
        out = []
        for i, item in enumerate(v):
            if not isinstance(item, str):
                self.err(f"{path}.{key}[{i}]", "expected a string")
            else:
                out.append(item)
        return tuple(out)

    def file(self, raw: dict, key: str, path: str) -> str | None:
        v = self.string(raw, key, path)
        if v is None:
            return None
        p = Path(os.path.expanduser(v))
        return str(p if p.is_absolute() else self.base_dir / p)  # relative to the web config, as in Go

    def choice(self, raw: dict, key: str, path: str, options: Iterable[str], default: str) -> str:
        v = raw.get(key)
        if v is None or v == "":
            return default
        opts = list(options)
        if v not in opts:
            self.err(f"{path}.{key}", f"unknown value {v!r}, expected one of {', '.join(opts)}{_did_you_mean(v, opts)}")
            return default
        return v

    # -- sections ------------------------------------------------------------------
    def tls(self, value: Any) -> TLSSettings | None:
        p = "tls_server_config"
        raw = self.mapping(value, p, TLS_KEYS)
        if not any(raw.get(k) not in (None, "") for k in TLS_ENABLING_KEYS):
            if raw:
                log.warning("%s has no certificate: TLS is off (exporter-toolkit behaves the same)", p)
            return None
        auth_options = [*CLIENT_AUTH, *UNSUPPORTED_CLIENT_AUTH]
        auth = self.choice(raw, "client_auth_type", p, auth_options, "NoClientCert")
        if auth in UNSUPPORTED_CLIENT_AUTH:
            self.err(f"{p}.client_auth_type", f"{auth} (accept any client certificate without verifying it) is not "
                     "supported by wan-exporter: Python's ssl module cannot ask for a certificate without verifying "
                     "it. Use RequireAndVerifyClientCert with client_ca_file")
        s = TLSSettings(
            cert_file=self.file(raw, "cert_file", p),
            key_file=self.file(raw, "key_file", p),
            cert=self.string(raw, "cert", p),
            key=self.string(raw, "key", p),
            client_ca_file=self.file(raw, "client_ca_file", p),
            client_ca=self.string(raw, "client_ca", p),
            client_auth_type=auth,
            client_allowed_sans=self.string_list(raw, "client_allowed_sans", p),
            min_version=self.choice(raw, "min_version", p, TLS_VERSIONS, "TLS12"),
            max_version=self.choice(raw, "max_version", p, TLS_VERSIONS, "TLS13"),
            cipher_suites=self.string_list(raw, "cipher_suites", p) or (),
            prefer_server_cipher_suites=self.boolean(raw, "prefer_server_cipher_suites", p, True),
            curve_preferences=self.string_list(raw, "curve_preferences", p) or (),
        )
        for inline, path_key in (("cert", "cert_file"), ("key", "key_file"), ("client_ca", "client_ca_file")):
            if getattr(s, inline) and getattr(s, path_key):
                self.err(p, f"give {path_key} or {inline} (inline PEM), not both")
        if not (s.cert or s.cert_file):
            self.err(f"{p}.cert_file", "required when TLS is configured (or give the certificate inline as cert)")
        if not (s.key or s.key_file):
            self.err(f"{p}.key_file", "required when TLS is configured (or give the key inline as key)")
        has_ca = bool(s.client_ca_file or s.client_ca)
        if has_ca and s.client_auth_type in ("NoClientCert", "RequestClientCert"):
            self.err(f"{p}.client_ca_file", f"a client CA is configured but client_auth_type is {s.client_auth_type}: "
                     "set client_auth_type: RequireAndVerifyClientCert to check client certificates")
        if not has_ca and s.client_auth_type in VERIFYING_CLIENT_AUTH:
            self.err(f"{p}.client_ca_file", f"required with client_auth_type {s.client_auth_type}: the CA that signs "
                     "the client certificates (without it any publicly trusted certificate would do)")
        if s.client_allowed_sans is not None and s.client_auth_type != "RequireAndVerifyClientCert":
            self.err(f"{p}.client_allowed_sans", "requires client_auth_type: RequireAndVerifyClientCert "
                     "(a client could otherwise connect without a certificate, leaving no SAN to match)")
        if TLS_VERSIONS[s.min_version] > TLS_VERSIONS[s.max_version]:
            self.err(f"{p}.min_version", f"{s.min_version} is above max_version {s.max_version}")
        for i, name in enumerate(s.cipher_suites):
            if name not in CIPHER_SUITES:
                self.err(f"{p}.cipher_suites[{i}]", f"unknown cipher suite {name!r}{_did_you_mean(name, CIPHER_SUITES)}"
                         " (Go names from crypto/tls CipherSuites(), e.g. TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)")
        for i, name in enumerate(s.curve_preferences):
            if name not in CURVES:
                self.err(f"{p}.curve_preferences[{i}]",
                         f"unknown curve {name!r}, expected one of {', '.join(CURVES)}{_did_you_mean(name, CURVES)}")
        if len(s.curve_preferences) > 1:
            self.err(f"{p}.curve_preferences", "wan-exporter can restrict key exchange to one curve only (Python's "
                     "ssl module); list one, or leave curve_preferences out for OpenSSL's defaults "
                     "(X25519, P-256, P-384, P-521)")
        return s

    def http(self, value: Any) -> tuple[bool, tuple[tuple[str, str], ...]]:
        p = "http_server_config"
        raw = self.mapping(value, p, HTTP_KEYS)
        http2 = self.boolean(raw, "http2", p, True)
        headers_raw = raw.get("headers")
        out: list[tuple[str, str]] = []
        if headers_raw is None:
            return http2, ()
        if not isinstance(headers_raw, dict):
            self.err(f"{p}.headers", "expected a mapping of header name to value")
            return http2, ()
        for name, v in headers_raw.items():
            hp = f"{p}.headers.{name}"
            if name not in HEADERS:
                self.err(hp, f"this header cannot be configured{_did_you_mean(name, HEADERS)}; allowed: "
                         + ", ".join(HEADERS))
                continue
            if v is None or v == "":
                continue  # "unset if blank"
            if not isinstance(v, str):
                self.err(hp, "expected a string")
                continue
            allowed = HEADERS[name]
            if allowed is not None and v not in allowed:
                self.err(hp, f"invalid value {v!r}, expected one of {', '.join(allowed)}")
                continue
            if any(ord(c) < 0x20 or ord(c) == 0x7F for c in v):
                self.err(hp, "control characters (line breaks) are not allowed in a header value")
                continue
            out.append((name, v))
        return http2, tuple(out)

    def users(self, value: Any) -> dict[str, str]:
        p = "basic_auth_users"
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.err(p, "expected a mapping of user name to bcrypt hash")
            return {}
        out: dict[str, str] = {}
        for name, h in value.items():
            up = f"{p}.{name}"
            if not isinstance(name, str):
                self.err(up, f"user name {name!r} read as {type(name).__name__}: quote it in the YAML")
                continue
            if not name or ":" in name:
                self.err(up, "user name must be non-empty and contain no ':' (basic auth cannot carry it)")
                continue
            if not isinstance(h, str):
                self.err(up, "expected a bcrypt hash string")
                continue
            m = BCRYPT_RE.match(h)
            if not m:
                self.err(up, "not a bcrypt hash: expected $2y$<cost>$ and 53 characters, as printed by "
                         "`htpasswd -nBC 10 \"\" | tr -d ':\\n'`; passwords are never stored in plain text")
                continue
            if not 4 <= int(m.group(1)) <= 31:
                self.err(up, f"bcrypt cost {int(m.group(1))} is outside 4-31")
                continue
            out[name] = h
        return out

    def rate_limit(self, value: Any) -> RateLimit | None:
        p = "rate_limit"
        raw = self.mapping(value, p, RATE_KEYS)
        if not raw:
            return None
        interval = 0.0
        iv = raw.get("interval")
        if iv is not None:
            try:
                if not isinstance(iv, str):
                    raise ValueError
                interval = parse_duration(iv)
            except ValueError:
                self.err(f"{p}.interval", "expected a duration like 1s or 100ms (0s disables the limit)")
        burst = raw.get("burst", 0)
        if isinstance(burst, bool) or not isinstance(burst, int) or burst < 0:
            self.err(f"{p}.burst", "expected a non-negative integer")
            burst = 0
        if interval <= 0:
            return None
        if burst < 1:
            self.err(f"{p}.burst", "must be at least 1 when interval is set (0 would refuse every request)")
        return RateLimit(interval=interval, burst=max(1, burst))


def parse_web_config(text: str, source: str = "<web config>", base_dir: str | os.PathLike | None = None) -> WebConfig:
    """Parse and validate the structure of a web config; raises :class:`ConfigError` listing every problem.

    Files are not read here; :func:`build_state` does that.
    """
    raw = load_yaml_mapping(text, source)
    parser = _Parser(Path(base_dir) if base_dir is not None else Path(source).parent)
    for k in raw:
        if k not in TOP_KEYS:
            hint = _did_you_mean(k, TOP_KEYS)
            if k == "tls_config":
                hint = " (did you mean 'tls_server_config'? tls_config is the old node_exporter name)"
            parser.err(str(k), f"unknown key{hint}")
    tls = parser.tls(raw.get("tls_server_config"))
    http2, headers = parser.http(raw.get("http_server_config"))
    users = parser.users(raw.get("basic_auth_users"))
    rate = parser.rate_limit(raw.get("rate_limit"))
    if parser.errors:
        raise ConfigError(parser.errors, source)
    return WebConfig(path=source, tls=tls, http2=http2, headers=headers, users=users, rate_limit=rate)


def read_web_config(path: str | os.PathLike) -> WebConfig:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError([f"cannot read web config file: {getattr(e, 'strerror', None) or e}"], str(p)) from None
    return parse_web_config(text, str(p), p.parent)


# --------------------------------------------------------------------------- TLS context


class _EncryptedKey(Exception):
    pass


def _no_password() -> bytes:
    # Never let OpenSSL prompt on a terminal for an encrypted key: the format has no password.
    raise _EncryptedKey


@contextlib.contextmanager
def _pem_path(data: str, name: str) -> Iterator[str]:
    """A path holding inline PEM for ``load_cert_chain``: an anonymous memory file where possible."""
    if hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd"):
        fd = os.memfd_create(name, getattr(os, "MFD_CLOEXEC", 0))
        try:
            os.write(fd, data.encode())
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    fd, tmp = tempfile.mkstemp(prefix="wan-exporter-", suffix=".pem")
    try:
        os.write(fd, data.encode())
        os.close(fd)
        yield tmp
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _readable(path: str, key: str, errors: list[str]) -> bool:
    try:
        with open(path, "rb") as f:
            f.read(1)
        return True
    except OSError as e:
        errors.append(f"tls_server_config.{key}: cannot read {path}: {e.strerror or e}")
        return False


def build_ssl_context(t: TLSSettings, source: str = "<web config>") -> ssl.SSLContext:
    """A server-side SSLContext for the settings; raises :class:`ConfigError` with what is wrong."""
    p = "tls_server_config"
    errors: list[str] = []
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.options |= ssl.OP_NO_RENEGOTIATION
    try:
        ctx.minimum_version = TLS_VERSIONS[t.min_version]
        ctx.maximum_version = TLS_VERSIONS[t.max_version]
    except (ValueError, ssl.SSLError) as e:
        errors.append(f"{p}.min_version: this OpenSSL refuses {t.min_version}-{t.max_version}: {e}")
    if t.prefer_server_cipher_suites:
        ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:
        ctx.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    with contextlib.ExitStack() as stack:
        files_ok = True
        if t.cert_file:
            files_ok &= _readable(t.cert_file, "cert_file", errors)
        if t.key_file:
            files_ok &= _readable(t.key_file, "key_file", errors)
        if files_ok:
            cert = t.cert_file or stack.enter_context(_pem_path(t.cert or "", "cert"))
            key = t.key_file or stack.enter_context(_pem_path(t.key or "", "key"))
            try:
                ctx.load_cert_chain(cert, key, password=_no_password)
            except _EncryptedKey:
                errors.append(f"{p}.key_file: the private key is encrypted and the web config has no key password; "
                              "decrypt it (openssl pkey -in KEY -out KEY.plain) and protect it by file permissions")
            except (ssl.SSLError, OSError) as e:
                errors.append(f"{p}: cannot load the certificate and key ({_describe_ssl_error(e)}); both must be PEM "
                              "and the key must belong to the certificate")
    if t.client_ca_file or t.client_ca:
        where = f"{p}.client_ca_file" if t.client_ca_file else f"{p}.client_ca"
        try:
            if t.client_ca_file:
                if _readable(t.client_ca_file, "client_ca_file", errors):
                    ctx.load_verify_locations(cafile=t.client_ca_file)
            else:
                ctx.load_verify_locations(cadata=t.client_ca)
            if not ctx.get_ca_certs():
                errors.append(f"{where}: no CA certificate found in it")
        except (ssl.SSLError, OSError, ValueError) as e:
            errors.append(f"{where}: not a PEM CA certificate ({_describe_ssl_error(e)})")
    ctx.verify_mode = CLIENT_AUTH.get(t.client_auth_type, ssl.CERT_REQUIRED)
    suites = [CIPHER_SUITES[c] for c in t.cipher_suites if CIPHER_SUITES.get(c)]
    if suites:
        try:
            ctx.set_ciphers(":".join(suites))
        except ssl.SSLError as e:
            errors.append(f"{p}.cipher_suites: this OpenSSL offers none of them ({_describe_ssl_error(e)})")
    if len(t.curve_preferences) == 1:
        try:
            ctx.set_ecdh_curve(CURVES[t.curve_preferences[0]])
        except (ValueError, ssl.SSLError) as e:
            errors.append(f"{p}.curve_preferences: this OpenSSL refuses {t.curve_preferences[0]}: {e}")
    with contextlib.suppress(NotImplementedError):
        ctx.set_alpn_protocols(["http/1.1"])
    if errors:
        raise ConfigError(errors, source)
    return ctx


def _describe_ssl_error(e: BaseException) -> str:
    if isinstance(e, ssl.SSLError) and e.reason:
        return f"{e.library or 'ssl'}: {e.reason}"
    return getattr(e, "strerror", None) or str(e)


def peer_sans(cert: Mapping[str, Any]) -> list[str]:
    """Subject alternative names of a verified peer certificate (``getpeercert()``)."""
    return [str(v).strip() for _, v in cert.get("subjectAltName", ())]


def san_allowed(sans: Iterable[str], allowed: Iterable[str]) -> bool:
    """Exact match, as exporter-toolkit does; IP addresses compared as addresses (Go and
    OpenSSL spell IPv6 differently)."""
    allowed = list(allowed)
    for san in sans:
        if san in allowed:
            return True
        try:
            ip = ipaddress.ip_address(san)
        except ValueError:
            continue
        for a in allowed:
            with contextlib.suppress(ValueError):
                if ipaddress.ip_address(a) == ip:
                    return True
    return False


# --------------------------------------------------------------------------- live state


@dataclass(frozen=True)
class WebState:
    """What requests use: the config with its objects built. Replaced whole on reload."""

    config: WebConfig
    ssl_context: ssl.SSLContext | None
    users: Mapping[str, bytes] = field(repr=False)
    dummy_hash: bytes | None = field(repr=False)


class _TokenBucket:
    def __init__(self, limit: RateLimit, clock: Callable[[], float]) -> None:
        self.limit = limit
        self.clock = clock
        self.tokens = float(limit.burst)
        self.at = clock()
        self.lock = threading.Lock()

    def allow(self) -> bool:
        with self.lock:
            now = self.clock()
            self.tokens = min(self.limit.burst, self.tokens + (now - self.at) / self.limit.interval)
            self.at = now
            if self.tokens >= 1:
                self.tokens -= 1
                return True
            return False


class _AuthCache:
    """Recent bcrypt verdicts, so a scrape every few seconds does not pay bcrypt each time.

    Keyed by (user, HMAC of the password under a per-process key, stored hash): a rotated hash
    or removed user never matches an old entry, and no password or plain digest sits in memory.
    """

    def __init__(self, ttl: float, size: int, clock: Callable[[], float]) -> None:
        self.ttl = ttl
        self.size = size
        self.clock = clock
        self.lock = threading.Lock()
        self.items: OrderedDict[tuple, tuple[bool, float]] = OrderedDict()

    def get(self, key: tuple) -> bool | None:
        with self.lock:
            hit = self.items.get(key)
            if hit is None:
                return None
            if hit[1] < self.clock():
                del self.items[key]
                return None
            return hit[0]

    def put(self, key: tuple, ok: bool) -> None:
        with self.lock:
            self.items[key] = (ok, self.clock() + self.ttl)
            self.items.move_to_end(key)
            while len(self.items) > self.size:
                self.items.popitem(last=False)


def _stat(path: str) -> tuple | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev


def parse_basic_auth(header: str | None) -> tuple[str, bytes] | None:
    """(user, password) from an ``Authorization: Basic`` header, or None."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(b":")
    if not sep:
        return None
    return user.decode("utf-8", "surrogateescape"), password


class WebSecurity:
    """A loaded ``--web.config.file``, kept current; call it on a WSGI app to protect the app.

    The protected app carries ``web_security`` so :class:`wan_exporter.server.HttpServer` finds
    the TLS context. Raises :class:`ConfigError` at construction when the file is invalid: the
    exporter must never start unprotected by mistake.
    """

    def __init__(self, path: str | os.PathLike, *, check_interval: float = 1.0, auth_cache_ttl: float = 60.0,
                 auth_cache_size: int = 256, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = str(path)
        self.check_interval = check_interval
        self.clock = clock
        self._reload_lock = threading.Lock()
        self._bcrypt_lock = threading.Lock()  # bcrypt is CPU-bound by design: one at a time, as exporter-toolkit
        self._dummy_hashes: dict[int, bytes] = {}
        self._cache = _AuthCache(auth_cache_ttl, auth_cache_size, clock)
        self._hmac_key = secrets.token_bytes(32)
        self.reloads = 0
        self.reload_failures = 0
        self.last_reload_ok = True
        self.last_error: str | None = None
        cfg = read_web_config(self.path)
        sig = self._signature(cfg.files)
        self._state = self._build(cfg)
        self._watch = cfg.files
        self._sig = sig
        self._last_check = clock()
        self._limiter = _TokenBucket(cfg.rate_limit, clock) if cfg.rate_limit else None
        self.tls_enabled = self._state.ssl_context is not None

    # -- state -----------------------------------------------------------------------
    @property
    def state(self) -> WebState:
        return self._state

    def _signature(self, files: Iterable[str]) -> tuple:
        return tuple((f, _stat(f)) for f in (self.path, *files))

    def _dummy_hash(self, cost: int) -> bytes:
        import bcrypt

        h = self._dummy_hashes.get(cost)
        if h is None:
            h = bcrypt.hashpw(secrets.token_urlsafe(18).encode(), bcrypt.gensalt(rounds=cost))
            self._dummy_hashes[cost] = h
        return h

    def _build(self, cfg: WebConfig) -> WebState:
        ctx = build_ssl_context(cfg.tls, cfg.path) if cfg.tls is not None else None
        users = {u: h.encode() for u, h in cfg.users.items()}
        dummy = None
        if users:
            # An unknown user is checked against a hash as costly as the costliest real one,
            # so timing cannot tell a wrong name from a wrong password.
            dummy = self._dummy_hash(max(int(BCRYPT_RE.match(h).group(1)) for h in cfg.users.values()))
        return WebState(config=cfg, ssl_context=ctx, users=users, dummy_hash=dummy)

    def refresh(self) -> None:
        """Reload if the config or a file it names changed; checked at most once per interval."""
        now = self.clock()
        if now - self._last_check < self.check_interval:
            return
        if not self._reload_lock.acquire(blocking=False):
            return  # another thread is checking; use the current state meanwhile
        try:
            self._last_check = now
            sig = self._signature(self._watch)
            if sig == self._sig:
                return
            try:
                cfg = read_web_config(self.path)
                self._watch = cfg.files
                sig = self._signature(cfg.files)
                state = self._build(cfg)
                if (state.ssl_context is not None) != self.tls_enabled:
                    raise ConfigError(["tls_server_config: TLS cannot be switched on or off while running; "
                                       "restart the exporter to apply this"], cfg.path)
            except ConfigError as e:
                self._sig = sig
                self.reload_failures += 1
                self.last_reload_ok = False
                self.last_error = str(e)
                log.error("web config changed but is invalid; keeping the last good one: %s", e)
                return
            self._sig = sig
            self._state = state
            old = self._limiter.limit if self._limiter else None
            if state.config.rate_limit != old:
                self._limiter = _TokenBucket(state.config.rate_limit, self.clock) if state.config.rate_limit else None
            self.reloads += 1
            self.last_reload_ok = True
            self.last_error = None
            log.info("web config reloaded from %s (tls=%s, users=%d)", self.path, self.tls_enabled,
                     len(state.users))
        finally:
            self._reload_lock.release()

    # -- used by the server ------------------------------------------------------------
    def ssl_context(self) -> ssl.SSLContext | None:
        self.refresh()
        return self._state.ssl_context

    def check_client_cert(self, conn: ssl.SSLSocket) -> str | None:
        """None when the peer may proceed, else why not (client_allowed_sans)."""
        allowed = self._state.config.tls.client_allowed_sans if self._state.config.tls else None
        if allowed is None:
            return None
        cert = conn.getpeercert()
        if not cert:
            return "client did not present a certificate to match against client_allowed_sans"
        sans = peer_sans(cert)
        if san_allowed(sans, allowed):
            return None
        return f"client certificate SANs {sans} match none of client_allowed_sans"

    def extra_headers(self) -> list[tuple[str, str]]:
        return list(self._state.config.headers)

    def authenticate(self, authorization: str | None, state: WebState | None = None) -> bool:
        """Check an Authorization header against the users. Same cost for unknown users."""
        import bcrypt

        state = state or self._state
        creds = parse_basic_auth(authorization)
        if creds is None:
            return False
        user, password = creds
        stored = state.users.get(user)
        known = stored is not None
        hashed = stored if known else state.dummy_hash
        if hashed is None:
            return False
        digest = hmac.new(self._hmac_key, password, hashlib.sha256).digest()
        key = (user, digest, hashed)
        ok = self._cache.get(key)
        if ok is None:
            with self._bcrypt_lock:
                try:
                    ok = bcrypt.checkpw(password[:BCRYPT_MAX_PASSWORD], hashed)
                except ValueError:
                    ok = False
            ok = ok and known
            self._cache.put(key, ok)
        return ok

    # -- WSGI ------------------------------------------------------------------------
    def __call__(self, app: WSGIApp) -> "SecuredApp":
        return SecuredApp(self, app)


class SecuredApp:
    """WSGI middleware: rate limit, then basic auth, then the app; configured headers on every answer."""

    def __init__(self, security: WebSecurity, app: WSGIApp) -> None:
        self.web_security = security
        self.app = app

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        sec = self.web_security
        sec.refresh()
        state = sec.state
        extra = state.config.headers

        def respond(status: str, headers: list, exc_info: Any = None) -> Any:
            have = {k.lower() for k, _ in headers}
            return start_response(status, list(headers) + [(k, v) for k, v in extra if k.lower() not in have],
                                  *([exc_info] if exc_info else []))

        limiter = sec._limiter
        if limiter is not None and not limiter.allow():
            respond("429 Too Many Requests", [("Content-Type", "text/plain; charset=utf-8"), ("Retry-After", "1")])
            return [b"Too many requests.\n"]
        if state.users and not sec.authenticate(environ.get("HTTP_AUTHORIZATION"), state):
            respond("401 Unauthorized", [("Content-Type", "text/plain; charset=utf-8"),
                                         ("WWW-Authenticate", WWW_AUTHENTICATE)])
            return [b"Unauthorized.\n"]
        return self.app(environ, respond)


def make_wrapper(path: str | os.PathLike) -> WebSecurity:
    """Entry point for ``--web.config.file``: validates now (raising :class:`ConfigError`) and
    returns the callable that protects a WSGI app."""
    return WebSecurity(path)


def main(argv: list[str] | None = None) -> int:
    """``python -m wan_exporter.webconfig FILE``: validate a web config including its files."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m wan_exporter.webconfig WEB_CONFIG_FILE", file=sys.stderr)
        return 2
    try:
        sec = WebSecurity(args[0])
    except ConfigError as e:
        print(f"{args[0]}: invalid, {len(e.errors)} error(s):", file=sys.stderr)
        for err in e.errors:
            print(f"  {err}", file=sys.stderr)
        return 1
    cfg = sec.state.config
    print(f"{args[0]}: valid (tls={'on' if sec.tls_enabled else 'off'}"
          f"{', client_auth_type=' + cfg.tls.client_auth_type if cfg.tls else ''}, users={len(cfg.users)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
