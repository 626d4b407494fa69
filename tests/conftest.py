import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT / "exporter", ROOT / "tests"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from support.tools import fail_setup_skips  # noqa: E402


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    fail_setup_skips(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    fail_setup_skips(outcome.get_result())


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """Tiny Wan pipelines of every kind, built once per run for the tests that run the demo stack.

    Under pytest-xdist (scripts/test.sh runs the suite in several processes) every worker has a
    base temp of its own under one shared parent: the first worker builds there, under a lock,
    and the others wait for it and reuse the models."""
    import fcntl

    from support.deploy_procs import build_tiny_models

    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    with open(root / "tiny-models-shared.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return build_tiny_models(root / "tiny-models-shared")
