"""``--web.config.file``: TLS, basic auth, response headers and a rate limit.

The file has the Prometheus exporter-toolkit format (exporter-toolkit
``docs/web-configuration.md``), so one file serves this exporter and node_exporter alike and
``promtool check web-config`` validates it. It is typed by the main config's loader
(:func:`wan_exporter.config.load_typed`): one error style with paths, one did-you-mean.
prometheus_client has no basic auth, hence this module: a WSGI middleware for users, headers
and the rate limit; the ``ssl.SSLContext`` that :mod:`wan_exporter.web.server` uses for every new
connection is built by :mod:`wan_exporter.web.tls`.

Like exporter-toolkit, the file and the certificates it names are re-read while running, so
certificates and users rotate without a restart: their mtimes are checked at most once per
``check_interval`` on the request path, a change is loaded in full and swapped in at once,
and a broken file keeps the last good one (logged). Whether TLS is on is decided at start.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import logging
import os
import re
import secrets
import ssl
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from ..config import ConfigError, Duration, did_you_mean, load_typed, load_yaml_mapping
from .tls import TLS_ENABLING_KEYS, TLSSettings, build_ssl_context, peer_sans, san_allowed, tls_problems

__all__ = ["WebConfig", "WebSecurity", "TLSSettings", "RateLimit", "build_ssl_context", "make_wrapper",
           "parse_basic_auth", "parse_web_config", "peer_sans", "read_web_config", "san_allowed"]

log = logging.getLogger(__name__)

WSGIApp = Callable[[dict, Callable], Iterable[bytes]]

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


# --------------------------------------------------------------------------- the file, typed


@dataclass(frozen=True)
class HTTPServerConfig:
    http2: bool = True  # accepted for compatibility; this server speaks HTTP/1.x only
    headers: dict[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True)
class RateLimitConfig:
    interval: Duration = 0.0  # 0: no limit
    burst: int = 0


@dataclass(frozen=True)
class WebConfigFile:
    """The file as written; :class:`WebConfig` is what it means once checked."""

    tls_server_config: TLSSettings | None = None
    http_server_config: HTTPServerConfig = field(default_factory=HTTPServerConfig)
    basic_auth_users: dict[str, str] = field(default_factory=dict)
    rate_limit: RateLimitConfig | None = None


@dataclass(frozen=True)
class RateLimit:
    interval: float  # seconds between requests on average
    burst: int


@dataclass(frozen=True)
class WebConfig:
    path: str
    tls: TLSSettings | None = None
    http2: bool = True
    headers: tuple[tuple[str, str], ...] = ()
    users: Mapping[str, str] = field(default_factory=dict, repr=False)
    rate_limit: RateLimit | None = None

    @property
    def files(self) -> tuple[str, ...]:
        """The files this config reads besides itself: watched for rotation."""
        if self.tls is None:
            return ()
        return tuple(f for f in (self.tls.cert_file, self.tls.key_file, self.tls.client_ca_file) if f)


def _unset_blanks(raw: dict) -> dict:
    """Go's zero values: an empty string or null in ``tls_server_config`` means the default."""
    tls = raw.get("tls_server_config")
    if isinstance(tls, dict):
        raw = {**raw, "tls_server_config": {k: v for k, v in tls.items() if v is not None and v != ""}}
    return raw


def _tls(s: TLSSettings | None, raw: Any, base_dir: Path, errors: list[str]) -> TLSSettings | None:
    """TLS is on when a key exporter-toolkit's IsEnabled() reads is set; paths are relative to the file."""
    if s is None or not isinstance(raw, dict) or not any(k in raw for k in TLS_ENABLING_KEYS):
        if isinstance(raw, dict) and raw:
            log.warning("tls_server_config has no certificate: TLS is off (exporter-toolkit behaves the same)")
        return None

    def absolute(v: str | None) -> str | None:
        if not v:
            return None
        p = Path(os.path.expanduser(v))
        return str(p if p.is_absolute() else base_dir / p)

    s = dataclasses.replace(s, cert_file=absolute(s.cert_file), key_file=absolute(s.key_file),
                            client_ca_file=absolute(s.client_ca_file))
    errors.extend(tls_problems(s))
    return s


def _headers(raw: dict[str, str | None], errors: list[str]) -> tuple[tuple[str, str], ...]:
    out = []
    for name, v in raw.items():
        p = f"http_server_config.headers.{name}"
        if name not in HEADERS:
            errors.append(f"{p}: this header cannot be configured{did_you_mean(name, HEADERS)}; allowed: "
                          + ", ".join(HEADERS))
        elif not v:
            continue  # "unset if blank"
        elif HEADERS[name] is not None and v not in HEADERS[name]:
            errors.append(f"{p}: invalid value {v!r}, expected one of {', '.join(HEADERS[name])}")
        elif any(ord(c) < 0x20 or ord(c) == 0x7F for c in v):
            errors.append(f"{p}: control characters (line breaks) are not allowed in a header value")
        else:
            out.append((name, v))
    return tuple(out)


def _users(typed: dict[str, str], raw: Any, errors: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key in raw if isinstance(raw, dict) else ():
        name, h = str(key), typed.get(str(key))
        p = f"basic_auth_users.{name}"
        if not isinstance(key, str):
            errors.append(f"{p}: user name {key!r} read as {type(key).__name__}: quote it in the YAML")
        elif not name or ":" in name:
            errors.append(f"{p}: user name must be non-empty and contain no ':' (basic auth cannot carry it)")
        elif not isinstance(raw[key], str):
            continue  # the loader said so
        elif not (m := BCRYPT_RE.match(h or "")):
            errors.append(f"{p}: not a bcrypt hash: expected $2y$<cost>$ and 53 characters, as printed by "
                          "`htpasswd -nBC 10 \"\" | tr -d ':\\n'`; passwords are never stored in plain text")
        elif not 4 <= int(m.group(1)) <= 31:
            errors.append(f"{p}: bcrypt cost {int(m.group(1))} is outside 4-31")
        else:
            out[name] = h
    return out


def _rate_limit(r: RateLimitConfig | None, errors: list[str]) -> RateLimit | None:
    if r is None:
        return None
    if r.burst < 0:
        errors.append("rate_limit.burst: expected a non-negative integer")
    if r.interval <= 0:
        return None
    if r.burst < 1:
        errors.append("rate_limit.burst: must be at least 1 when interval is set (0 would refuse every request)")
    return RateLimit(interval=r.interval, burst=max(1, r.burst))


def parse_web_config(text: str, source: str = "<web config>", base_dir: str | os.PathLike | None = None) -> WebConfig:
    """Parse and check a web config; raises :class:`ConfigError` listing every problem with its path.

    Files are not read here; :func:`wan_exporter.web.tls.build_ssl_context` does that.
    """
    raw = _unset_blanks(load_yaml_mapping(text, source))
    typed, errors = load_typed(WebConfigFile, raw)
    errors = [e.replace("tls_config: unknown key", "tls_config: unknown key (did you mean 'tls_server_config'? "
                        "tls_config is the old node_exporter name)", 1) if e.startswith("tls_config: unknown key")
              else e for e in errors]
    typed = typed or WebConfigFile()
    base = Path(base_dir) if base_dir is not None else Path(source).parent
    tls = _tls(typed.tls_server_config, raw.get("tls_server_config"), base, errors)
    headers = _headers(typed.http_server_config.headers, errors)
    users = _users(typed.basic_auth_users, raw.get("basic_auth_users"), errors)
    rate = _rate_limit(typed.rate_limit, errors)
    if errors:
        raise ConfigError(errors, source)
    return WebConfig(path=source, tls=tls, http2=typed.http_server_config.http2, headers=headers, users=users,
                     rate_limit=rate)


def read_web_config(path: str | os.PathLike) -> WebConfig:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError([f"cannot read web config file: {getattr(e, 'strerror', None) or e}"], str(p)) from None
    return parse_web_config(text, str(p), p.parent)


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

    The protected app carries ``web_security`` so :class:`wan_exporter.web.server.HttpServer` finds
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
    """``python -m wan_exporter.web.config FILE``: validate a web config including its files."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    usage = "usage: python3 -m wan_exporter.web.config WEB_CONFIG_FILE"
    if args in (["-h"], ["--help"]):
        print(f"{usage}\nCheck a --web.config.file as the exporter loads it, certificates and keys included. "
              "Exit 0 when valid, else 1 with every error and its path.")
        return 0
    if len(args) != 1:
        print(usage, file=sys.stderr)
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
