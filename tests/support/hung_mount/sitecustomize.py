"""A stand-in for a hung NFS or FUSE mount, loaded into the exporter process by the tests.

No network file system can be mounted and then hung here, so the one fake is at the
narrowest boundary there is from Python: every ``stat``, ``statvfs``, listing and ``open`` of a
path under ``$WAN_TEST_HUNG_PATH`` blocks for ever, as the kernel does on a hard-mounted NFS
share whose server is gone (the thread waits without holding the GIL, like a blocked
syscall). Anything else passes through untouched.
"""

import builtins
import io
import os
import threading

_HUNG = os.environ.get("WAN_TEST_HUNG_PATH")

if _HUNG:
    _prefix = os.path.abspath(_HUNG)
    _never = threading.Event()

    def _hangs(path) -> bool:  # noqa: ANN001
        try:
            p = os.fsdecode(path) if not isinstance(path, int) else ""
        except TypeError:
            return False
        return bool(p) and (os.path.abspath(p) + "/").startswith(_prefix + "/")

    def _wrap(fn):  # noqa: ANN001, ANN202
        def hung(path=".", *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
            if _hangs(path):
                _never.wait()
            return fn(path, *args, **kwargs)

        hung.__wrapped__ = fn
        return hung

    for _name in ("stat", "lstat", "scandir", "listdir", "open", "statvfs"):
        setattr(os, _name, _wrap(getattr(os, _name)))
    builtins.open = io.open = _wrap(builtins.open)
