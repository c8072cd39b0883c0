"""The container image: built with podman from a locally made Debian base, started with
the shipped configuration on a mounted volume, fetched, edited and stopped."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MISSING = [tool for tool in ("podman", "runc", "debootstrap") if shutil.which(tool) is None]


@pytest.mark.skipif(os.geteuid() != 0, reason="podman with debootstrap needs root here")
@pytest.mark.skipif(
    bool(MISSING), reason=f"not installed: {', '.join(MISSING)} (make test installs them as root)"
)
def test_the_image_builds_serves_and_takes_an_edit() -> None:
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "container-smoke.sh")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if result.returncode == 77:
        pytest.skip(result.stdout.strip())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "put=200 TITLE:Head of Purchasing user=xcap" in result.stdout
    assert "healthcheck: healthy" in result.stdout
    assert "sort_locale: None ['Zorn', 'Åsa']" in result.stdout


def test_the_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    result = subprocess.run(
        [hadolint, str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
