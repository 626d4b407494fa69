"""Build step: ship the alerting and Grafana files inside the package (see wan_exporter/shipped.py).

Everything else about the package is declared in pyproject.toml.
"""

import runpy
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
SHIPPED = runpy.run_path(str(HERE / "exporter" / "wan_exporter" / "shipped.py"))


class build_py_with_assets(build_py):
    """Copy alerting/ and grafana/ into wan_exporter/assets/ of the build; an editable install reads the checkout."""

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        dest = Path(self.build_lib) / "wan_exporter" / "assets"
        written = SHIPPED["copy_tree"](HERE, dest)
        if not any(p.name == "prometheus.yml" for p in written):
            raise SystemExit(f"alerting/prometheus.yml not found under {HERE}: the package would not be whole")


setup(cmdclass={"build_py": build_py_with_assets})
