"""The container image: built with podman from a locally made Debian base, started with
the shipped configuration on a mounted volume, fetched, edited, stopped and removed."""

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
    # Its own image tag, container and folder (two clones can run it at once), all gone
    # afterwards, whatever the outcome.
    made = dict(pair.split("=", 1) for pair in result.stdout.splitlines()[0].split() if "=" in pair)
    assert made["image"].startswith("localhost/xcap-gateway:smoke-"), result.stdout
    assert _podman("image", "exists", made["image"]) == 1
    assert _podman("container", "exists", made["container"]) == 1
    assert not Path(made["work"]).exists()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "put=200 TITLE:Head of Purchasing user=xcap" in result.stdout
    assert "healthcheck: healthy" in result.stdout
    assert "sort_locale: None ['Zorn', 'Åsa']" in result.stdout


def _podman(*args: str) -> int:
    """podman's exit status: 0 yes, 1 no (for `exists`)."""
    return subprocess.run(
        ["podman", *args], capture_output=True, timeout=60, check=False
    ).returncode


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
