"""docs/deployment.md stays true to the files it describes."""

from __future__ import annotations

import re

import yaml

from support.procs import REPO

DOC = REPO / "docs" / "deployment.md"


def test_every_yaml_snippet_parses():
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) >= 6
    for b in blocks:
        yaml.safe_load(b)


def test_pinned_images_in_the_doc_are_the_compose_ones():
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    text = DOC.read_text()
    for name, svc in compose["services"].items():
        assert f"`{svc['image']}`" in text, f"{name}: {svc['image']} not named in docs/deployment.md"
    base = re.search(r"^ARG CUDA_IMAGE=(\S+)$", (REPO / "Dockerfile").read_text(), re.M).group(1)
    assert f"`{base}`" in text


def test_paths_the_doc_names_exist():
    text = DOC.read_text()
    for path in sorted(set(re.findall(r"`((?:deploy|scripts|alerting|grafana|tests|docs)/[\w./-]+?)`", text))):
        if any(c in path for c in "*<"):
            continue
        assert (REPO / path).exists(), f"docs/deployment.md names {path}, which does not exist"
