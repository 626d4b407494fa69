"""The README's metrics reference is generated from the collectors and must stay current."""

from pathlib import Path

from wan_exporter.reference import BEGIN, END, table

README = Path(__file__).resolve().parents[1] / "README.md"


def test_metrics_reference_is_current():
    text = README.read_text()
    assert BEGIN in text and END in text
    current = text.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    assert current == table().strip(), "README metrics reference is stale: run python3 -m wan_exporter.reference --write"


def test_readme_has_the_two_commands():
    text = README.read_text()
    assert "bash scripts/demo.sh" in text and "bash scripts/test.sh" in text
    assert "scripts/test.sh" in (README.parent / ".ci" / "run").read_text()
