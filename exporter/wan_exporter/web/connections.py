"""Connections until their request head is complete: a selector entry each, not a thread.

A client that connects and then says nothing, or trickles its request line and headers, holds
only a socket and a few bytes here. One event loop thread accepts, does the TLS handshake
without blocking, and reads request heads; only a connection whose head is complete is handed
to a worker thread (:mod:`wan_exporter.web.server`), and only when a request slot is free, so the
number of threads is bounded by the request limits, never by the number of open connections.

At the connection cap the stalest half-open connection is closed to make room, instead of
the newest being refused: a client that holds many idle connections and re-opens those that
are dropped cannot keep a scraper out, because the scraper's connection is the freshest and
completes its head at once.
"""

from __future__ import annotations

import errno
import logging
import queue
import selectors
import socket
import ssl
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from .config import WebSecurity

log = logging.getLogger(__name__)

MAX_HEAD = 64 * 1024  # request line + headers; beyond: 414 (request line alone) or 431
ACCEPT_BATCH = 256  # connections accepted per wake-up before other sockets get a turn
PLAIN_HTTP_DRAIN = 0.2  # seconds to read what is left of a plain request refused on the TLS port
AUTH_QUEUE = 32  # connections waiting for a password check; beyond, 429
_OUT_OF_FDS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


@dataclass
class Handoff:
    """A connection whose request head is complete, with the request slot it holds."""

    sock: socket.socket
    addr: tuple
    head: bytes  # everything read so far: the head and any bytes after it
    deadline: float  # the header deadline (monotonic)
    slot: threading.Semaphore


class _Pending:
    __slots__ = ("sock", "addr", "deadline", "buf", "handshaking", "events", "round", "authed")

    def __init__(self, sock: socket.socket, addr: tuple, deadline: float, handshaking: bool, round_: int) -> None:
        self.round = round_  # the loop round it was accepted in
        self.sock = sock
        self.addr = addr
        self.deadline = deadline
        self.buf = bytearray()
        self.handshaking = handshaking
        self.events = selectors.EVENT_READ
        self.authed = False  # its credentials were verified while it held no request slot


def head_complete(buf: bytes | bytearray) -> bool:
    """True once the request line and headers end with an empty line (as http.server reads them)."""
    return b"\n\r\n" in buf or b"\n\n" in buf


def request_path(head: bytes | bytearray) -> str:
    """The path of the request line, without its query; '' when the line is unusable."""
    line = bytes(head.split(b"\n", 1)[0])
    words = line.split()
    return words[1].split(b"?", 1)[0].decode("latin-1") if len(words) >= 2 else ""


def header_value(head: bytes | bytearray, name: bytes) -> str | None:
    """The first ``name:`` header of a request head (name in lower case), or None."""
    for line in bytes(head).split(b"\n")[1:]:
        line = line.rstrip(b"\r")
        if not line:
            break
        k, sep, v = line.partition(b":")
        if sep and k.strip().lower() == name:
            return v.strip().decode("latin-1")
    return None


def plain_answer(status: str, body: bytes, extra: list[tuple[str, str]] = ()) -> bytes:
    head = [f"HTTP/1.0 {status}", "Content-Type: text/plain; charset=utf-8", f"Content-Length: {len(body)}",
            "Connection: close", *(f"{k}: {v}" for k, v in extra)]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


class Intake:
    """The event loop: accepts, handshakes and reads heads; hands complete requests to ``dispatch``.

    ``admit(path)`` returns the request slot for a request to ``path``, or None when none is free
    (the request is then answered ``busy(path)`` from here, without a thread). ``dispatch`` must
    call :meth:`done` once the handed-off connection is closed.
    """

    def __init__(self, listener: socket.socket, *, cap: int, header_timeout: float, web: "WebSecurity | None",
                 admit: Callable[[str], threading.Semaphore | None], busy: Callable[[str], bytes],
                 dispatch: Callable[[Handoff], None], count: Callable[[str], None],
                 own_auth_paths: frozenset[str] = frozenset()) -> None:
        self.listener = listener
        # Paths whose app authenticates the request itself (a Job pod's bearer token on
        # /-/probe-result): basic auth is not asked of them here.
        self.own_auth_paths = own_auth_paths
        self.cap = cap
        self.header_timeout = header_timeout
        self.web = web
        self.admit, self.busy, self.dispatch, self.count = admit, busy, dispatch, count
        self.pending: OrderedDict[int, _Pending] = OrderedDict()  # in accept order = deadline order
        self.draining: dict[int, _Pending] = {}
        self._active = 0
        self._active_lock = threading.Lock()
        self._stopped = False
        self._resume_accept_at: float | None = None
        self._round = 0
        self.sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        listener.setblocking(False)
        self.sel.register(listener, selectors.EVENT_READ, "accept")
        self.sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        # Password checks (bcrypt, slow by design) run on one thread of their own, the connections
        # that wait for them hold no request slot: a flood of wrong passwords never starves scrapes
        # whose credentials are verified (cached). At most AUTH_QUEUE wait; beyond, 429.
        self._auth_queue: queue.Queue[_Pending] = queue.Queue(maxsize=AUTH_QUEUE)
        self._auth_done: deque[tuple[_Pending, bool]] = deque()
        self._auth_thread: threading.Thread | None = None

    # -- bookkeeping -------------------------------------------------------------------
    @property
    def open_connections(self) -> int:
        return len(self.pending) + len(self.draining) + self._active + self._auth_queue.qsize() + len(self._auth_done)

    def done(self) -> None:
        """A handed-off connection was closed."""
        with self._active_lock:
            self._active -= 1

    def stop(self) -> None:
        self._stopped = True
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    # -- the loop ----------------------------------------------------------------------
    def run(self) -> None:
        try:
            while not self._stopped:
                now = time.monotonic()
                wake = [p.deadline for p in self.draining.values()]
                if self.pending:
                    wake.append(next(iter(self.pending.values())).deadline)
                if self._resume_accept_at is not None:
                    wake.append(self._resume_accept_at)
                timeout = min(1.0, max(0.0, min(wake) - now)) if wake else 1.0
                self._round += 1
                accept = False
                for key, mask in self.sel.select(timeout):
                    if key.data == "accept":
                        accept = True  # after the reads: a connection gets its turn before it can be evicted
                    elif key.data == "wake":
                        self._drain_wake()
                        self._authenticated()
                    else:
                        self._guarded(self._drain_plain if key.fileobj.fileno() in self.draining else self._advance,
                                      key.data)
                if accept:
                    try:
                        self._accept()
                    except Exception:  # noqa: BLE001 - the loop must outlive any one connection
                        log.exception("accepting connections failed")
                self._expire(time.monotonic())
        finally:
            while True:  # connections still waiting for a password check are closed, the thread ended
                try:
                    waiting = self._auth_queue.get_nowait()
                except queue.Empty:
                    break
                if waiting is not None:
                    self._close(waiting)
            try:
                self._auth_queue.put_nowait(None)  # type: ignore[arg-type] - ends the password-check thread
            except queue.Full:
                pass
            while self._auth_done:
                self._close(self._auth_done.popleft()[0])
            for p in [*self.pending.values(), *self.draining.values()]:
                self._close(p)
            self.pending.clear()
            self.draining.clear()
            self.sel.close()
            self._wake_r.close()
            self._wake_w.close()

    def _guarded(self, step: Callable[[_Pending], None], p: _Pending) -> None:
        """One connection's step; an unexpected error drops that connection, never the loop."""
        try:
            step(p)
        except Exception:  # noqa: BLE001
            log.exception("connection from %s failed", p.addr)
            self.pending.pop(p.sock.fileno(), None)
            self.draining.pop(p.sock.fileno(), None)
            self._close(p)

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:
            pass

    def _accept(self) -> None:
        for _ in range(ACCEPT_BATCH):
            if self.open_connections >= self.cap and self.pending and self._newest_round_only():
                return  # the half-open ones have not had their turn yet: the rest wait in the backlog
            try:
                sock, addr = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                if e.errno not in _OUT_OF_FDS:
                    log.debug("accept failed: %s", e)
                    return
                if self._evict_stalest(any_round=True):  # out of descriptors: make room as at the cap
                    continue
                self.count("accept_paused")
                self.sel.unregister(self.listener)
                self._resume_accept_at = time.monotonic() + 0.05
                return
            if self.open_connections >= self.cap and not self._evict_stalest():
                self.count("connections_refused")  # none half-open: all are being answered
                sock.close()
                continue
            self._start(sock, addr)

    def _newest_round_only(self) -> bool:
        return next(iter(self.pending.values())).round == self._round

    def _start(self, sock: socket.socket, addr: tuple) -> None:
        sock.setblocking(False)
        if self.web is not None and self.web.tls_enabled:
            try:
                ctx = self.web.ssl_context()  # the one current now: certificates rotate without a restart
                if ctx is None:
                    raise ValueError("no TLS context")
                sock = ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
            except Exception as e:  # noqa: BLE001 - one connection lost, never the loop
                log.debug("TLS setup for %s failed: %s", addr, e)
                sock.close()
                return
        p = _Pending(sock, addr, time.monotonic() + self.header_timeout, isinstance(sock, ssl.SSLSocket), self._round)
        try:
            self.sel.register(sock, selectors.EVENT_READ, p)
        except (OSError, ValueError):
            sock.close()
            return
        self.pending[sock.fileno()] = p
        self._guarded(self._advance, p)  # a scraper's request is usually there already: no need to wait a round

    def _evict_stalest(self, any_round: bool = False) -> bool:
        """Close the oldest half-open connection, unless it was accepted this round (it has not
        had its turn to be read yet)."""
        if not self.pending:
            return False
        if not any_round and self._newest_round_only():
            return False
        _, p = self.pending.popitem(last=False)
        self.count("connections_evicted")
        log.debug("connection cap (%d) reached: closing the stalest half-open connection from %s", self.cap, p.addr)
        self._close(p)
        return True

    def _expire(self, now: float) -> None:
        while self.pending:
            fd, p = next(iter(self.pending.items()))
            if p.deadline > now:
                break
            del self.pending[fd]
            self.count("header_timeouts")
            self._close(p)
        for fd, p in list(self.draining.items()):
            if p.deadline <= now:
                del self.draining[fd]
                self._close(p)
        if self._resume_accept_at is not None and now >= self._resume_accept_at:
            self._resume_accept_at = None
            self.sel.register(self.listener, selectors.EVENT_READ, "accept")

    def _close(self, p: _Pending) -> None:
        try:
            self.sel.unregister(p.sock)
        except (KeyError, ValueError, OSError):
            pass
        try:
            p.sock.close()
        except OSError:
            pass

    def _drop(self, p: _Pending) -> None:
        self.pending.pop(p.sock.fileno(), None)
        self._close(p)

    def _want(self, p: _Pending, events: int) -> None:
        if p.events != events:
            p.events = events
            self.sel.modify(p.sock, events, p)

    # -- one connection ----------------------------------------------------------------
    def _advance(self, p: _Pending) -> None:
        if p.sock.fileno() < 0:
            return  # closed earlier in this round (evicted at the cap)
        if p.handshaking and not self._handshake(p):
            return
        while len(p.buf) <= MAX_HEAD:
            try:
                data = p.sock.recv(65536)
            except (ssl.SSLWantReadError, BlockingIOError, InterruptedError):
                self._want(p, selectors.EVENT_READ)
                break
            except ssl.SSLWantWriteError:
                self._want(p, selectors.EVENT_WRITE)
                return
            except OSError as e:
                self.count("requests_dropped")
                log.debug("dropped %s while reading the request: %s", p.addr, e)
                self._drop(p)
                return
            if not data:
                self._drop(p)  # the client gave up before finishing its request
                return
            p.buf += data
            if head_complete(p.buf):
                break
        if head_complete(p.buf):
            self._hand_off(p)
        elif len(p.buf) > MAX_HEAD:
            first_line_ends = b"\n" in p.buf[:MAX_HEAD]
            status = "431 Request Header Fields Too Large" if first_line_ends else "414 URI Too Long"
            self._answer(p, status, f"Request head longer than {MAX_HEAD} bytes.\n".encode())

    def _handshake(self, p: _Pending) -> bool:
        try:
            p.sock.do_handshake()
        except ssl.SSLWantReadError:
            self._want(p, selectors.EVENT_READ)
            return False
        except ssl.SSLWantWriteError:
            self._want(p, selectors.EVENT_WRITE)
            return False
        except (OSError, ValueError) as e:
            self.count("tls_handshake_failed")
            log.debug("TLS handshake with %s failed: %s", p.addr, e)
            if isinstance(e, ssl.SSLError) and e.reason == "HTTP_REQUEST":
                self._refuse_plain_http(p)
            else:
                self._drop(p)
            return False
        p.handshaking = False
        problem = self.web.check_client_cert(p.sock) if self.web is not None else None
        if problem:
            self.count("tls_client_refused")
            log.info("refused TLS client %s: %s", p.addr[0], problem)
            self._drop(p)
            return False
        self._want(p, selectors.EVENT_READ)
        return True  # the client may have sent its request with the handshake: read on

    def _hand_off(self, p: _Pending) -> None:
        self.pending.pop(p.sock.fileno(), None)
        path = request_path(p.buf)
        if (self.web is not None and not p.authed and self.web.needs_auth and path not in self.own_auth_paths
                and not self._auth_gate(p)):
            return
        slot = self.admit(path)
        if slot is None:
            self.count("requests_rejected")
            self._answer(p, "503 Service Unavailable", self.busy(path), [("Retry-After", "1")])
            return
        try:
            self.sel.unregister(p.sock)
        except (KeyError, ValueError):
            pass
        with self._active_lock:
            self._active += 1
        try:
            self.dispatch(Handoff(p.sock, p.addr, bytes(p.buf), p.deadline, slot))
        except Exception:  # noqa: BLE001 - e.g. no thread could be started: this request is lost, not the loop
            log.exception("could not hand the request from %s to a thread", p.addr)
            slot.release()
            self.done()
            p.sock.close()

    # -- basic auth, before a request slot is taken ---------------------------------------
    def _auth_gate(self, p: _Pending) -> bool:
        """True to go on to a request slot; False when ``p`` was answered (401, 429) or parked for bcrypt."""
        from .config import WWW_AUTHENTICATE

        assert self.web is not None
        verdict = self.web.cached_verdict(header_value(p.buf, b"authorization"))
        if verdict:
            return True
        if verdict is False:
            self.count("auth_refused")
            self._answer(p, "401 Unauthorized", b"Unauthorized.\n", [("WWW-Authenticate", WWW_AUTHENTICATE)])
            return False
        if self.web.source_blocked(str(p.addr[0])) or self._auth_queue.full():
            self.count("auth_throttled")
            self._answer(p, "429 Too Many Requests", b"Too many failed password checks; try again later.\n",
                         [("Retry-After", "1")])
            return False
        try:
            self.sel.unregister(p.sock)
        except (KeyError, ValueError):
            pass
        if self._auth_thread is None:
            self._auth_thread = threading.Thread(target=self._check_passwords, name="http-auth", daemon=True)
            self._auth_thread.start()
        self._auth_queue.put_nowait(p)
        return False

    def _check_passwords(self) -> None:
        """The password-check thread: one bcrypt at a time, results handed back to the loop."""
        while True:
            p = self._auth_queue.get()
            if p is None or self._stopped:
                return
            ok = False
            try:
                ok = self.web is not None and self.web.authenticate(header_value(p.buf, b"authorization"),
                                                                    source=str(p.addr[0]))
            except Exception:  # noqa: BLE001 - a failed check is a refusal, never a dead thread
                log.exception("password check for %s failed", p.addr)
            self._auth_done.append((p, ok))
            try:
                self._wake_w.send(b"a")
            except OSError:
                pass

    def _authenticated(self) -> None:
        while self._auth_done:
            p, ok = self._auth_done.popleft()
            if ok:
                p.authed = True
                p.deadline = max(p.deadline, time.monotonic() + 1.0)  # its head was complete before the wait
                self._guarded(self._hand_off, p)
            else:
                from .config import WWW_AUTHENTICATE

                self.count("auth_refused")
                self._answer(p, "401 Unauthorized", b"Unauthorized.\n", [("WWW-Authenticate", WWW_AUTHENTICATE)])

    def _answer(self, p: _Pending, status: str, body: bytes, extra: list[tuple[str, str]] = ()) -> None:
        """A short refusal written from the loop: it fits the socket buffer, or the client loses it."""
        self.pending.pop(p.sock.fileno(), None)
        headers = [*extra, *(self.web.extra_headers() if self.web is not None else ())]
        try:
            p.sock.send(plain_answer(status, body, headers))
            if not isinstance(p.sock, ssl.SSLSocket):
                p.sock.shutdown(socket.SHUT_WR)
        except (OSError, ValueError):
            pass
        self._close(p)

    def _refuse_plain_http(self, p: _Pending) -> None:
        """Plain HTTP reached the TLS port: say so in plain HTTP, as Go's server does, then read
        what is left of the request briefly, so closing does not reset the answer away."""
        plain = socket.socket  # the plain methods: below the TLS layer that refused the bytes
        try:
            plain.send(p.sock, plain_answer("400 Bad Request", b"Client sent an HTTP request to an HTTPS server.\n"))
            plain.shutdown(p.sock, socket.SHUT_WR)
        except OSError:
            self._drop(p)
            return
        self.pending.pop(p.sock.fileno(), None)
        p.deadline = time.monotonic() + PLAIN_HTTP_DRAIN
        self.draining[p.sock.fileno()] = p
        self._want(p, selectors.EVENT_READ)

    def _drain_plain(self, p: _Pending) -> None:
        try:
            if socket.socket.recv(p.sock, 4096):
                return
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            pass
        self.draining.pop(p.sock.fileno(), None)
        self._close(p)
