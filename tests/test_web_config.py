"""--web.config.file validation: every bad input gets its message with its path; the shipped
examples pass ``promtool check web-config`` and our own loader; a bad file stops the exporter."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support.procs import REPO, exporter_env
from support.web_certs import CA
from support.tools import require_tool
from wan_exporter.config import ConfigError
from wan_exporter.web.config import WebSecurity, build_ssl_context, parse_web_config, read_web_config

HASH = "$2y$04$Ktk9q0qQb0H6oLe3lQx6U.3E1nUXYbz4Fb7UcT6rXo5KH5rjuDmH6"  # bcrypt-shaped; never verified here
TLS = "tls_server_config:\n  cert_file: s.crt\n  key_file: s.key\n"


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        parse_web_config(text, "web.yml", "/etc/x")
    return exc.value.errors


# (yaml, expected message, does promtool reject it too)
CASES = [
    ("basic_auth_user:\n  a: x\n", "basic_auth_user: unknown key (did you mean 'basic_auth_users'?)", True),
    ("tls_config:\n  cert_file: a\n", "tls_config: unknown key (did you mean 'tls_server_config'?", True),
    ("tls_server_config:\n  certfile: a\n  key_file: b\n",
     "tls_server_config.certfile: unknown key (did you mean 'cert_file'?)", True),
    ("tls_server_config:\n  cert_file: a\n", "tls_server_config.key_file: required when TLS is configured", True),
    ("tls_server_config:\n  client_auth_type: RequireAndVerifyClientCert\n",
     "tls_server_config.cert_file: required when TLS is configured", True),
    (TLS + "  client_auth_type: RequireAndVerifyClientCerts\n",
     "tls_server_config.client_auth_type: expected one of NoClientCert",
     True),
    (TLS + "  client_auth_type: RequireAndVerifyClientCerts\n", "(did you mean 'RequireAndVerifyClientCert'?)", True),
    (TLS + "  client_auth_type: RequireAnyClientCert\n",
     "tls_server_config.client_auth_type: RequireAnyClientCert (accept any client certificate without verifying it) "
     "is not supported", False),
    (TLS + "  client_ca_file: ca.crt\n",
     "tls_server_config.client_ca_file: a client CA is configured but client_auth_type is NoClientCert", True),
    (TLS + "  client_auth_type: RequireAndVerifyClientCert\n",
     "tls_server_config.client_ca_file: required with client_auth_type RequireAndVerifyClientCert", False),
    (TLS + "  client_auth_type: VerifyClientCertIfGiven\n",
     "tls_server_config.client_ca_file: required with client_auth_type VerifyClientCertIfGiven", False),
    (TLS + "  client_allowed_sans: [prometheus]\n",
     "tls_server_config.client_allowed_sans: requires client_auth_type: RequireAndVerifyClientCert", True),
    (TLS + "  min_version: TLS14\n",
     "tls_server_config.min_version: expected one of TLS10, TLS11, TLS12, TLS13, got 'TLS14'", True),
    (TLS + "  min_version: TLS13\n  max_version: TLS12\n",
     "tls_server_config.min_version: TLS13 is above max_version TLS12", False),
    (TLS + "  cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]\n",
     "tls_server_config.cipher_suites[0]: unknown cipher suite 'TLS_RSA_WITH_RC4_128_SHA'", True),
    (TLS + "  curve_preferences: [CurveP257]\n",
     "tls_server_config.curve_preferences[0]: unknown curve 'CurveP257', expected one of CurveP256", True),
    (TLS + "  curve_preferences: [X25519, CurveP256]\n",
     "tls_server_config.curve_preferences: wan-exporter can restrict key exchange to one curve only", False),
    (TLS + "  cert: '-----BEGIN CERTIFICATE-----'\n",
     "tls_server_config: give cert_file or cert (inline PEM), not both", False),
    (TLS + "  prefer_server_cipher_suites: 'yes'\n",
     "tls_server_config.prefer_server_cipher_suites: expected true or false", True),
    ("tls_server_config: [a]\n", "tls_server_config: expected a mapping", True),
    ("http_server_config:\n  headers:\n    X-Powered-By: wan\n",
     "http_server_config.headers.X-Powered-By: this header cannot be configured", True),
    ("http_server_config:\n  headers:\n    x-frame-options: deny\n",
     "http_server_config.headers.x-frame-options: this header cannot be configured (did you mean 'X-Frame-Options'?)",
     True),
    ("http_server_config:\n  headers:\n    X-Frame-Options: allow\n",
     "http_server_config.headers.X-Frame-Options: invalid value 'allow', expected one of deny, sameorigin", True),
    ("http_server_config:\n  headers:\n    X-Content-Type-Options: sniff\n",
     "http_server_config.headers.X-Content-Type-Options: invalid value 'sniff', expected one of nosniff", True),
    ("http_server_config:\n  headers:\n    Content-Security-Policy: \"a\\r\\nSet-Cookie: x\"\n",
     "http_server_config.headers.Content-Security-Policy: control characters", False),
    ("http_server_config:\n  http3: true\n", "http_server_config.http3: unknown key (did you mean 'http2'?)", True),
    ("basic_auth_users:\n  alice: hunter2\n", "basic_auth_users.alice: not a bcrypt hash", True),
    ("basic_auth_users:\n  yes: " + HASH + "\n", "basic_auth_users.True: user name True read as bool: quote it", False),
    ("basic_auth_users:\n  alice: $2y$03$" + HASH[7:] + "\n", "basic_auth_users.alice: bcrypt cost 3 is outside 4-31",
     False),
    ("basic_auth_users:\n  'a:b': " + HASH + "\n",
     "basic_auth_users.a:b: user name must be non-empty and contain no ':'", False),
    ("basic_auth_users: [alice]\n", "basic_auth_users: expected a mapping", True),
    ("rate_limit:\n  interval: 1s\n  burst: 0\n", "rate_limit.burst: must be at least 1 when interval is set", False),
    ("rate_limit:\n  interval: soon\n  burst: 2\n", "rate_limit.interval: expected a duration like", True),
    ("basic_auth_users: !!python/object/apply:os.system ['echo pwned']\n", "line 1: YAML tag not allowed", True),
    ("- a list\n", "top level: expected a mapping", True),
    ("tls_server_config: {\n", "invalid YAML", True),
]


@pytest.mark.parametrize("text, expected, promtool_rejects", CASES, ids=[c[1][:60] for c in CASES])
def test_each_bad_input_has_its_message(text, expected, promtool_rejects, tmp_path):
    errs = errors_of(text)
    assert any(expected in e for e in errs), errs
    if promtool_rejects:  # where exporter-toolkit refuses it too, so does the reference
        (tmp_path / "web.yml").write_text(text)
        r = subprocess.run([require_tool("promtool"), "check", "web-config", str(tmp_path / "web.yml")],
                           capture_output=True,
                           text=True, timeout=30)
        assert r.returncode != 0, f"promtool accepted: {text!r}"


def test_every_problem_is_reported_at_once():
    errs = errors_of(
        "tls_server_config:\n  cert_file: a\n  min_version: TLS9\n"
        "http_server_config:\n  headers:\n    X-Frame-Options: allow\n"
        "basic_auth_users:\n  alice: plain\n  bob: also-plain\n"
        "extra: 1\n"
    )
    assert len(errs) == 6, errs
    for prefix in ("tls_server_config.key_file:", "tls_server_config.min_version:",
                   "http_server_config.headers.X-Frame-Options:", "basic_auth_users.alice:", "basic_auth_users.bob:",
                   "extra:"):
        assert any(e.startswith(prefix) for e in errs), (prefix, errs)


def test_empty_file_means_plain_http_without_users():
    cfg = parse_web_config("", "web.yml", "/etc/x")
    assert cfg.tls is None and not cfg.users and cfg.headers == ()


def test_relative_paths_are_relative_to_the_web_config():
    cfg = parse_web_config(TLS + "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: /abs/ca.crt\n",
                           "web.yml", "/etc/wan")
    assert (cfg.tls.cert_file, cfg.tls.key_file, cfg.tls.client_ca_file) == ("/etc/wan/s.crt", "/etc/wan/s.key",
                                                                              "/abs/ca.crt")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca = CA(d)
    return ca, ca.server(), ca.client()


def test_file_problems_are_reported_with_their_key(pki, tmp_path):
    ca, server, client = pki
    cfg = parse_web_config(f"tls_server_config:\n  cert_file: missing.crt\n  key_file: {server.key}\n"
                           f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {server.key}\n",
                           "web.yml", tmp_path)
    with pytest.raises(ConfigError) as exc:
        build_ssl_context(cfg.tls)
    errs = exc.value.errors
    assert any(e.startswith("tls_server_config.cert_file: cannot read") and "missing.crt" in e for e in errs), errs
    assert any(e.startswith("tls_server_config.client_ca_file:") for e in errs), errs

    mismatch = parse_web_config(f"tls_server_config:\n  cert_file: {server.cert}\n  key_file: {client.key}\n",
                                "web.yml", tmp_path)
    with pytest.raises(ConfigError) as exc:
        build_ssl_context(mismatch.tls)
    assert "cannot load the certificate and key" in exc.value.errors[0], exc.value.errors


def test_encrypted_key_is_refused_without_prompting(pki, tmp_path):
    from cryptography.hazmat.primitives import serialization

    ca, server, client = pki
    key = serialization.load_pem_private_key(server.key.read_bytes(), None)
    enc = tmp_path / "enc.key"
    enc.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.BestAvailableEncryption(b"pw")))
    cfg = parse_web_config(f"tls_server_config:\n  cert_file: {server.cert}\n  key_file: {enc}\n", "web.yml", tmp_path)
    with pytest.raises(ConfigError) as exc:
        build_ssl_context(cfg.tls)
    assert "the private key is encrypted" in exc.value.errors[0]


def test_inline_certificate_and_key(pki, tmp_path):
    ca, server, client = pki
    indent = lambda p: "".join(f"    {line}\n" for line in p.read_text().splitlines())  # noqa: E731
    text = (f"tls_server_config:\n  cert: |\n{indent(server.cert)}  key: |\n{indent(server.key)}"
            f"  client_auth_type: VerifyClientCertIfGiven\n  client_ca: |\n{indent(ca.cert_path)}")
    cfg = parse_web_config(text, "web.yml", tmp_path)
    assert "BEGIN" not in repr(cfg), "inline secrets stay out of reprs and logs"
    ctx = build_ssl_context(cfg.tls)
    assert len(ctx.get_ca_certs()) == 1


EXAMPLES = sorted((REPO / "examples").glob("web-config*.yml"))


def _substituted(example: Path, pki, tmp_path: Path) -> Path:
    ca, server, client = pki
    tls = tmp_path / "tls"
    tls.mkdir(exist_ok=True)
    shutil.copy(server.cert, tls / "server.crt")
    shutil.copy(server.key, tls / "server.key")
    shutil.copy(ca.cert_path, tls / "client-ca.crt")
    out = tmp_path / example.name
    out.write_text(example.read_text().replace("/etc/wan-exporter/tls/", f"{tls}/"))
    return out


def test_examples_exist():
    assert {p.name for p in EXAMPLES} >= {"web-config.yml", "web-config-tls.yml", "web-config-mtls.yml",
                                          "web-config-basic-auth.yml"}


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_shipped_example_is_accepted_by_promtool_and_by_the_exporter(example, pki, tmp_path):
    path = _substituted(example, pki, tmp_path)
    r = subprocess.run([require_tool("promtool"), "check", "web-config", str(path)], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    sec = WebSecurity(path)
    cfg = read_web_config(path)
    assert sec.tls_enabled == (cfg.tls is not None)
    assert sec.tls_enabled or cfg.users


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=60,
                          env=exporter_env({"WAN_EXPORTER_NVML_MODULE": "no_such_nvml_module"}))


def test_bad_web_config_stops_the_exporter_before_it_serves(tmp_path):
    bad = tmp_path / "web.yml"
    bad.write_text("tls_server_config:\n  cert_file: nope.crt\nbasic_auth_users:\n  alice: hunter2\n")
    r = _run("wan_exporter", "--web.listen-address=127.0.0.1:0", f"--web.config.file={bad}")
    assert r.returncode == 1
    assert "invalid --web.config.file" in r.stderr
    assert "tls_server_config.key_file: required" in r.stderr
    assert "basic_auth_users.alice: not a bcrypt hash" in r.stderr


def test_check_command_for_web_configs(pki, tmp_path):
    good = _substituted(REPO / "examples" / "web-config.yml", pki, tmp_path)
    r = _run("wan_exporter.web.config", str(good))
    assert r.returncode == 0 and "valid (tls=on, client_auth_type=RequireAndVerifyClientCert, users=1)" in r.stdout
    bad = tmp_path / "bad.yml"
    bad.write_text("http_server_config:\n  headers:\n    X-Frame-Options: allow\n")
    r = _run("wan_exporter.web.config", str(bad))
    assert r.returncode == 1 and "http_server_config.headers.X-Frame-Options: invalid value" in r.stderr


def test_the_web_config_and_the_main_config_speak_one_error_style():
    from wan_exporter.config import parse_config

    with pytest.raises(ConfigError) as main:
        parse_config("models:\n  - {name: m, kind: wan2.2-t2v-a14b, hub_id: a/b, dtype: bfloat61}\n")
    [web] = errors_of(TLS + "  max_version: TLS31\n")
    [main_err] = [e for e in main.value.errors if ".dtype:" in e]
    shape = re.compile(r"^[\w.\[\]]+: expected one of [\w, ]+, got '\w+' \(did you mean '\w+'\?\)$")
    assert shape.match(web) and shape.match(main_err), (web, main_err)
    [unknown_web] = errors_of("rate_limit:\n  burts: 1\n")
    with pytest.raises(ConfigError) as unknown_main:
        parse_config("hashing:\n  chunk_byte: 1\n")
    assert unknown_web == "rate_limit.burts: unknown key (did you mean 'burst'?)"
    assert unknown_main.value.errors == ["hashing.chunk_byte: unknown key (did you mean 'chunk_bytes'?)"]


def test_any_key_exporter_toolkit_reads_as_enabling_turns_tls_on():
    assert errors_of("tls_server_config:\n  client_auth_type: NoClientCert\n") == [
        "tls_server_config.cert_file: required when TLS is configured (or give the certificate inline as cert)",
        "tls_server_config.key_file: required when TLS is configured (or give the key inline as key)"]
    assert parse_web_config("tls_server_config:\n  min_version: TLS13\n", "w.yml", "/x").tls is None
