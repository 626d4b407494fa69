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
    """Tiny Wan pipelines of every kind, built once per session for the tests that run the demo stack."""
    from support.deploy_procs import build_tiny_models

    return build_tiny_models(tmp_path_factory.getbasetemp() / "tiny-models-shared")
