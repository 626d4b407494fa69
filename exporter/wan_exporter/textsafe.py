"""Text from files and configs made safe for a terminal.

A file name is anyone's to choose: one with ESC, CR or a backspace in it can move the cursor and
erase a "critical" line; a bidi override can reorder what is shown. Every CLI line that carries a
name from disk or a config goes through :func:`terminal_safe`, which shows such characters as
Python escapes (``\\x1b``, ``\\r``, ``\\u202e``) and leaves everything else as it is.
"""

from __future__ import annotations

import re

# C0 controls (tab kept), DEL, C1 controls, and the bidi embedding/override/isolate marks.
_UNSAFE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escape(m: re.Match) -> str:
    c = ord(m.group())
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def terminal_safe(text: object) -> str:
    return _UNSAFE.sub(_escape, str(text))
