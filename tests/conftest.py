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
