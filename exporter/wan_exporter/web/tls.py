"""TLS for ``--web.config.file``: the ``tls_server_config`` settings, their rules, and the
``ssl.SSLContext`` built from them.

Names and defaults are exporter-toolkit's (Go's ``crypto/tls``). Where Python's ``ssl`` module
cannot do what Go does, the file is refused with a clear error rather than served with weaker
settings (see ``CLIENT_AUTH``).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import ssl
import tempfile
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Literal, Mapping

from ..config import ConfigError, did_you_mean

P = "tls_server_config"

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


# exporter-toolkit's IsEnabled(): any of these turns TLS on.
TLS_ENABLING_KEYS = ("cert", "key", "client_ca", "cert_file", "key_file", "client_ca_file", "client_auth_type")

ClientAuth = Literal["NoClientCert", "RequestClientCert", "VerifyClientCertIfGiven", "RequireAndVerifyClientCert",
                     "RequireAnyClientCert", "RequireClientCert"]
TLSVersion = Literal["TLS10", "TLS11", "TLS12", "TLS13"]


@dataclass(frozen=True)
class TLSSettings:
    """``tls_server_config``, typed by config.py's loader; file paths made absolute by the parser."""

    cert_file: str | None = None
    key_file: str | None = None
    cert: str | None = field(default=None, repr=False)
    key: str | None = field(default=None, repr=False)
    client_ca_file: str | None = None
    client_ca: str | None = field(default=None, repr=False)
    client_auth_type: ClientAuth = "NoClientCert"
    client_allowed_sans: tuple[str, ...] | None = None
    min_version: TLSVersion = "TLS12"
    max_version: TLSVersion = "TLS13"
    cipher_suites: tuple[str, ...] = ()
    prefer_server_cipher_suites: bool = True
    curve_preferences: tuple[str, ...] = ()


def tls_problems(s: TLSSettings) -> list[str]:
    """The rules across fields (and against this ``ssl`` module) that typing alone cannot state."""
    out: list[str] = []

    def err(path: str, msg: str) -> None:
        out.append(f"{path}: {msg}")

    if s.client_auth_type in UNSUPPORTED_CLIENT_AUTH:
        err(f"{P}.client_auth_type", f"{s.client_auth_type} (accept any client certificate without verifying it) is "
            "not supported by wan-exporter: Python's ssl module cannot ask for a certificate without verifying it. "
            "Use RequireAndVerifyClientCert with client_ca_file")
    for inline, path_key in (("cert", "cert_file"), ("key", "key_file"), ("client_ca", "client_ca_file")):
        if getattr(s, inline) and getattr(s, path_key):
            err(P, f"give {path_key} or {inline} (inline PEM), not both")
    if not (s.cert or s.cert_file):
        err(f"{P}.cert_file", "required when TLS is configured (or give the certificate inline as cert)")
    if not (s.key or s.key_file):
        err(f"{P}.key_file", "required when TLS is configured (or give the key inline as key)")
    has_ca = bool(s.client_ca_file or s.client_ca)
    if has_ca and s.client_auth_type in ("NoClientCert", "RequestClientCert"):
        err(f"{P}.client_ca_file", f"a client CA is configured but client_auth_type is {s.client_auth_type}: "
            "set client_auth_type: RequireAndVerifyClientCert to check client certificates")
    if not has_ca and s.client_auth_type in VERIFYING_CLIENT_AUTH:
        err(f"{P}.client_ca_file", f"required with client_auth_type {s.client_auth_type}: the CA that signs "
            "the client certificates (without it any publicly trusted certificate would do)")
    if s.client_allowed_sans is not None and s.client_auth_type != "RequireAndVerifyClientCert":
        err(f"{P}.client_allowed_sans", "requires client_auth_type: RequireAndVerifyClientCert "
            "(a client could otherwise connect without a certificate, leaving no SAN to match)")
    if TLS_VERSIONS[s.min_version] > TLS_VERSIONS[s.max_version]:
        err(f"{P}.min_version", f"{s.min_version} is above max_version {s.max_version}")
    for i, name in enumerate(s.cipher_suites):
        if name not in CIPHER_SUITES:
            err(f"{P}.cipher_suites[{i}]", f"unknown cipher suite {name!r}{did_you_mean(name, CIPHER_SUITES)}"
                " (Go names from crypto/tls CipherSuites(), e.g. TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)")
    for i, name in enumerate(s.curve_preferences):
        if name not in CURVES:
            err(f"{P}.curve_preferences[{i}]",
                f"unknown curve {name!r}, expected one of {', '.join(CURVES)}{did_you_mean(name, CURVES)}")
    if len(s.curve_preferences) > 1:
        err(f"{P}.curve_preferences", "wan-exporter can restrict key exchange to one curve only (Python's "
            "ssl module); list one, or leave curve_preferences out for OpenSSL's defaults "
            "(X25519, P-256, P-384, P-521)")
    return out


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
