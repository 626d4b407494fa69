"""``check-model --manifest FILE``: write or verify a ``sha256sum``-style manifest of a model's weights.

Lines are ``<sha256>  <path>`` with paths relative to the model's folder, so the file
written on a known-good node verifies a copy elsewhere (``sha256sum -c`` reads it too). A
file that exists is verified: every listed weight must be there with that digest; weights
it does not list are named, as they were not part of the known-good copy.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from ..state import HealthIssue

_LINE = re.compile(r"^([0-9a-fA-F]{64}) [ *](.+)$")


class ManifestError(ValueError):
    pass


def read(path: Path) -> dict[str, str]:
    """rel -> sha256 from a sha256sum-style file; raises ManifestError naming the bad line."""
    out: dict[str, str] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        m = _LINE.match(line)
        if not m:
            raise ManifestError(f"{path}:{n}: not a '<sha256>  <path>' line")
        out[m.group(2)] = m.group(1).lower()
    return out


def write(path: Path, digests: dict[str, str]) -> None:
    text = "".join(f"{d}  {rel}\n" for rel, d in sorted(digests.items()))
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or Path("."))
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def verify(listed: dict[str, str], hashed: dict[str, str], weights: list[str], source: str) -> list[HealthIssue]:
    """Findings of a copy against a manifest: mismatches, listed files absent, weights not listed."""
    issues: list[HealthIssue] = []
    for rel, want in sorted(listed.items()):
        have = hashed.get(rel)
        if rel not in weights:
            issues.append(HealthIssue("missing_file", f"listed in {source} but not a weight file of this model", rel))
        elif have is None:
            continue  # unreadable or changed while read: the hash check's own finding
        elif have != want:
            issues.append(HealthIssue("hash_mismatch", f"sha256 {have[:12]}... differs from {want[:12]}... of {source}",
                                      rel))
    for rel in sorted(set(weights) - set(listed)):
        issues.append(HealthIssue("hash_mismatch", f"not listed in {source}: not part of the known-good copy", rel))
    return issues
