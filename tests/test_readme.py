"""The README tells the truth: its metrics reference is current, and every command it and docs/ show runs."""

import argparse
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

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


# --------------------------------------------------------------------------- documented commands

DOCS = [README, *sorted((README.parent / "docs").glob("*.md"))]


def _command_lines(doc: Path) -> list[str]:
    """Command lines of a doc's ```sh blocks, and of untyped blocks that are a `wan-exporter [` synopsis."""
    out = []
    for lang, body in re.findall(r"^```(\w*)\n(.*?)^```", doc.read_text(), re.S | re.M):
        if lang not in ("sh", "bash", "shell") and not body.startswith("wan-exporter ["):
            continue
        body = re.sub(r"\\\n\s*", " ", body)              # shell continuations
        body = re.sub(r"\n\s+(?=\[)", " ", body)          # a synopsis wrapped onto an indented line
        for line in body.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            for part in line.split("&&"):
                part = part.strip()
                if part.startswith(("wan-exporter", "python3 -m ", "bash scripts/")):
                    out.append(part)
    return out


def _as_argv(synopsis: str, parser: argparse.ArgumentParser | None = None) -> list[str]:
    """A synopsis as one concrete argv: optional groups taken, the first of each alternative chosen,
    repetition marks dropped, and a placeholder in a flag name (`--no-collector.NAME`) made a real flag."""
    text = synopsis.replace("[", " ").replace("]", " ")
    out = []
    for w in shlex.split(text):
        w = w.split("|")[0]
        if w == "...":
            continue
        if parser is not None and w.startswith("--") and re.search(r"[A-Z]{2,}", w):
            pattern = re.compile(re.sub(r"[A-Z]{2,}", r"[\\w-]+", re.escape(w)) + "$")
            flags = [o for a in parser._actions for o in a.option_strings if pattern.match(o)]
            assert flags, f"`{synopsis}`: no flag like {w}"
            w = flags[0]
        out.append(w)
    return out


def test_every_documented_command_parses_as_documented():
    from wan_exporter import stack
    from wan_exporter.cli import build_parser

    seen, modules = [], set()
    for doc in DOCS:
        for cmd in _command_lines(doc):
            argv = _as_argv(cmd, build_parser())
            if argv[:3] == ["python3", "-m", "pytest"]:
                for path in (a.split("::")[0] for a in argv[3:] if a.startswith("tests/")):
                    assert (README.parent / path).exists(), f"{doc.name}: `{cmd}` names {path}, which does not exist"
                continue
            if argv[0] == "bash" and argv[1] != "scripts/stack.sh":
                script = README.parent / argv[1]
                r = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=30)
                assert script.is_file() and r.returncode == 0, f"{doc.name}: `{cmd}`: {r.stderr}"
                continue
            if argv[0] == "wan-exporter":
                parser, rest = build_parser(), argv[1:]
            elif argv[:2] == ["bash", "scripts/stack.sh"] or argv[:3] == ["python3", "-m", "wan_exporter.stack"]:
                parser, rest = stack.build_parser(), argv[2 if argv[0] == "bash" else 3:]
            elif argv[:3] == ["python3", "-m", "wan_exporter"]:
                parser, rest = build_parser(), argv[3:]
            else:  # a module of the package with its own command line: it exists and answers --help
                modules.add(argv[2])
                continue
            if "--help" in rest:
                continue  # answered by test_every_subcommand_answers_help
            try:
                parser.parse_args(rest)
            except SystemExit as e:
                raise AssertionError(f"{doc.name}: `{cmd}` does not parse as documented") from e
            seen.append(cmd)
    # The README's own quick start and synopsis are among them.
    assert "wan-exporter stack --demo" in seen
    assert any(c.startswith("wan-exporter check-config") for c in seen)
    env = dict(os.environ, PYTHONPATH=str(README.parent / "exporter"))
    for module in sorted(modules):
        r = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=60,
                           env=env, cwd=str(README.parent))
        assert r.returncode == 0 and "usage" in r.stdout.lower(), f"python3 -m {module} --help: {r.stdout + r.stderr}"


def _subcommands() -> list[str]:
    from wan_exporter.cli import build_parser

    [sub] = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return sorted(sub.choices)


def test_every_subcommand_is_documented_in_the_readme():
    synopsis = " ".join(_command_lines(README))
    for name in _subcommands():
        assert f"wan-exporter {name}" in synopsis, f"`wan-exporter {name}` is missing from the README command line"


@pytest.mark.parametrize("argv", [["--help"]] + [[name, "--help"] for name in _subcommands()])
def test_every_subcommand_answers_help(argv):
    env = dict(os.environ, PYTHONPATH=str(README.parent / "exporter"))
    r = subprocess.run([sys.executable, "-m", "wan_exporter", *argv], capture_output=True, text=True, timeout=60,
                       env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("usage: wan-exporter"), r.stdout
    assert not r.stderr


# --------------------------------------------------------------------------- tested versions

def _pins(path: Path) -> dict[str, str]:
    lines = [ln.split("#")[0].strip() for ln in path.read_text().splitlines()]
    return {n.lower().replace("_", "-"): v for n, v in (ln.split("==") for ln in lines if ln)}


def test_the_constraints_pin_the_readme_tested_versions_and_the_setup_uses_them():
    pins = _pins(README.parent / "constraints.txt")
    tested = README.read_text().split("## Tested versions", 1)[1].split("\n## ", 1)[0]
    for name, version in re.findall(r"(torch|diffusers|transformers|gguf|prometheus-client) (\d[\w.]*)", tested):
        assert pins[name] == version or pins[name].startswith(version + "."), (name, version, pins.get(name))
    image = _pins(README.parent / "deploy" / "docker" / "constraints.txt")
    assert {n: pins.get(n) for n in image} == image, "deploy/docker/constraints.txt drifted from constraints.txt"
    script = (README.parent / "scripts" / "test.sh").read_text()
    assert "pip install -q -c constraints.txt -e '.[test]'" in script
    assert script.index("torch==2.13.0") < script.index("-c constraints.txt"), "torch (CPU build) goes first"
