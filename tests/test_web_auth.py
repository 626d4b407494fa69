"""Basic auth, headers, rate limit and reloading of the web config, through the WSGI middleware.

A fake clock drives the once-per-second change check and the verdict cache; bcrypt is real.
"""

from __future__ import annotations

import base64
import os

import bcrypt
import pytest

from support.web_certs import CA
from wan_exporter.web.config import WebSecurity, parse_basic_auth

COST = 4


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, s: float) -> None:
        self.t += s


def h(password: str, cost: int = COST) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(cost)).decode()


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"inner\n"]


def call(wsgi, auth: str | None = None, path: str = "/metrics") -> tuple[int, dict, bytes]:
    environ = {"PATH_INFO": path, "REQUEST_METHOD": "GET"}
    if auth is not None:
        environ["HTTP_AUTHORIZATION"] = auth
    out = {}

    def start_response(status, headers, exc_info=None):
        out["status"], out["headers"] = int(status.split()[0]), dict(headers)

    body = b"".join(wsgi(environ, start_response))
    return out["status"], out["headers"], body


def basic(user: str, password: str | bytes) -> str:
    pw = password if isinstance(password, bytes) else password.encode()
    return "Basic " + base64.b64encode(user.encode() + b":" + pw).decode()


def write(path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@pytest.fixture
def web(tmp_path):
    path = tmp_path / "web.yml"
    write(path, f"basic_auth_users:\n  alice: {h('wonderland')}\n"
                "http_server_config:\n  headers:\n    X-Frame-Options: deny\n")
    clock = Clock()
    sec = WebSecurity(path, clock=clock)
    return sec, sec(app), clock, path


@pytest.fixture
def checkpw_calls(monkeypatch):
    calls: list[bytes] = []
    real = bcrypt.checkpw

    def counting(password, hashed):
        calls.append(hashed)
        return real(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", counting)
    return calls


def test_401_with_www_authenticate_unless_the_password_is_right(web):
    sec, wsgi, _, _ = web
    for auth in (None, "", "Bearer abc", "Basic !!!", "Basic " + base64.b64encode(b"no-colon").decode(),
                 basic("alice", "wrong"), basic("mallory", "wonderland"), basic("ALICE", "wonderland")):
        status, headers, body = call(wsgi, auth)
        assert status == 401, auth
        assert headers["WWW-Authenticate"].startswith("Basic realm=")
        assert headers["X-Frame-Options"] == "deny", "configured headers are on refusals too"
        assert body == b"Unauthorized.\n"
    status, headers, body = call(wsgi, basic("alice", "wonderland"))
    assert (status, body) == (200, b"inner\n")
    assert headers["X-Frame-Options"] == "deny"


def test_unknown_user_is_checked_against_a_hash_of_the_same_cost(tmp_path, checkpw_calls):
    path = tmp_path / "web.yml"
    write(path, f"basic_auth_users:\n  cheap: {h('a', 4)}\n  dear: {h('b', 6)}\n")
    sec = WebSecurity(path, clock=Clock())
    assert not sec.authenticate(basic("nobody", "x"))
    assert len(checkpw_calls) == 1, "an unknown user still pays one bcrypt verification"
    assert checkpw_calls[0].startswith(b"$2b$06$"), "as costly as the costliest real user"


def test_successful_verifications_are_cached_briefly(web, checkpw_calls):
    sec, wsgi, clock, _ = web
    for _ in range(5):
        assert call(wsgi, basic("alice", "wonderland"))[0] == 200
    assert len(checkpw_calls) == 1, "scrapes after the first skip bcrypt"
    clock.advance(61)
    assert call(wsgi, basic("alice", "wonderland"))[0] == 200
    assert len(checkpw_calls) == 2, "cache entries expire"
    for i in range(3):
        assert call(wsgi, basic("alice", f"guess-{i}"))[0] == 401
    assert len(checkpw_calls) == 5, "every new guess pays bcrypt"


def test_bcrypt_reads_72_bytes_as_htpasswd_and_go_do(tmp_path):
    long_pw = "x" * 72
    path = tmp_path / "web.yml"
    write(path, f"basic_auth_users:\n  alice: {h(long_pw)}\n")
    sec = WebSecurity(path, clock=Clock())
    assert sec.authenticate(basic("alice", long_pw))
    assert sec.authenticate(basic("alice", long_pw + "ignored"))
    assert not sec.authenticate(basic("alice", "x" * 71))


def test_non_utf8_user_and_nul_password_are_refused_cleanly(web):
    sec, _, _, _ = web
    raw = "Basic " + base64.b64encode(b"\xff\xfe:wonderland").decode()
    assert parse_basic_auth(raw) is not None
    assert not sec.authenticate(raw)
    assert not sec.authenticate(basic("alice", b"wonder\x00land"))


def test_users_rotate_within_a_second_and_a_broken_file_keeps_the_last_good(web):
    sec, wsgi, clock, path = web
    write(path, f"basic_auth_users:\n  alice: {h('looking-glass')}\n")
    clock.advance(0.5)
    assert call(wsgi, basic("alice", "wonderland"))[0] == 200, "checked at most once per second"
    clock.advance(0.6)
    assert call(wsgi, basic("alice", "looking-glass"))[0] == 200
    assert call(wsgi, basic("alice", "wonderland"))[0] == 401
    assert sec.reloads == 1 and sec.last_reload_ok

    write(path, "basic_auth_users:\n  alice: plain-text-password\n")
    clock.advance(1.1)
    assert call(wsgi, basic("alice", "looking-glass"))[0] == 200, "last good users kept"
    assert not sec.last_reload_ok and "basic_auth_users.alice: not a bcrypt hash" in sec.last_error
    assert sec.reload_failures == 1
    clock.advance(1.1)
    call(wsgi, basic("alice", "looking-glass"))
    assert sec.reload_failures == 1, "an unchanged broken file is not re-read every second"

    write(path, "")  # users removed: open again
    clock.advance(1.1)
    assert call(wsgi)[0] == 200 and sec.last_reload_ok


def test_tls_cannot_be_switched_on_by_a_reload(web, tmp_path):
    sec, wsgi, clock, path = web
    server = CA(tmp_path / "pki").server()
    write(path, f"tls_server_config:\n  cert_file: {server.cert}\n  key_file: {server.key}\n")
    clock.advance(1.1)
    assert call(wsgi, basic("alice", "wonderland"))[0] == 200
    assert not sec.last_reload_ok and "TLS cannot be switched on or off while running" in sec.last_error
    assert not sec.tls_enabled


def test_rate_limit_answers_429_beyond_the_burst(tmp_path):
    path = tmp_path / "web.yml"
    write(path, "rate_limit:\n  interval: 1s\n  burst: 2\n")
    clock = Clock()
    wsgi = WebSecurity(path, clock=clock)(app)
    assert [call(wsgi)[0] for _ in range(3)] == [200, 200, 429]
    clock.advance(1.0)
    assert call(wsgi)[0] == 200
