"""deploy/compose.yaml: it parses, every image is pinned, everything it mounts is in the
repository (or is a site's own secret, kept out of git and named in its header), and the
gateway, Prometheus and Grafana files agree with each other on names, paths and ports."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.conftest import ROOT

DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"


@dataclass(frozen=True)
class Mount:
    service: str
    source: Path  # on the host, resolved against deploy/
    target: str
    read_only: bool


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return loaded


def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose()["services"]
    return found


def bind_mounts() -> list[Mount]:
    """Every host path a service mounts, in the short ("./a:/b:ro") or the long syntax."""
    mounts = []
    for name, service in services().items():
        for volume in service.get("volumes", []):
            if isinstance(volume, str):
                source, target, *mode = volume.split(":")
                if not source.startswith((".", "/")):
                    continue  # a named volume
                read_only = bool(mode) and "ro" in mode[0].split(",")
            else:
                if volume["type"] != "bind":
                    continue
                source, target = volume["source"], volume["target"]
                read_only = bool(volume.get("read_only"))
            mounts.append(Mount(name, (DEPLOY / source).resolve(), target, read_only))
    return mounts


def secret_files() -> dict[str, Path]:
    return {
        name: (DEPLOY / secret["file"]).resolve() for name, secret in compose()["secrets"].items()
    }


def site_files() -> set[Path]:
    """What deploy/.gitignore keeps out of git: the files each site writes for itself."""
    lines = (DEPLOY / ".gitignore").read_text(encoding="utf-8").splitlines()
    return {
        (DEPLOY / line.lstrip("/")).resolve()
        for line in lines
        if line.strip() and not line.startswith("#")
    }


def gateway_config() -> dict[str, Any]:
    return tomllib.loads((DEPLOY / "gateway-compose.toml").read_text(encoding="utf-8"))


def port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def test_the_compose_file_parses_with_the_services_it_promises() -> None:
    document = compose()
    assert set(document["services"]) == {"ldap", "gateway", "prometheus", "grafana"}
    declared_volumes = set(document.get("volumes") or {})
    declared_secrets = set(document.get("secrets") or {})
    for name, service in document["services"].items():
        assert "image" in service or "build" in service, name
        for volume in service.get("volumes", []):
            if isinstance(volume, str) and not volume.startswith((".", "/")):
                assert volume.split(":")[0] in declared_volumes, f"{name}: {volume}"
        for secret in service.get("secrets", []):
            assert secret in declared_secrets, f"{name}: secret {secret}"
        for other in service.get("depends_on", []):
            assert other in document["services"], f"{name} depends on {other}"


@pytest.mark.parametrize("name", ["ldap", "prometheus", "grafana"])
def test_pulled_images_are_pinned(name: str) -> None:
    """A tag that names a release: `latest` or no tag would change under a running site."""
    image = services()[name]["image"]
    reference = image.rsplit("/", 1)[-1]
    assert "@sha256:" in reference or ":" in reference, image
    tag = reference.split("@")[0].partition(":")[2]
    assert tag and tag != "latest" and any(c.isdigit() for c in tag), image


def test_every_mounted_file_is_in_the_repository_or_a_site_secret() -> None:
    """Shipped files must exist (a missing bind source becomes an empty folder); passwords
    and logins are each site's own: kept out of git and named in the file's header."""
    header = COMPOSE.read_text(encoding="utf-8").split("services:", 1)[0]
    own = site_files()
    sources = [mount.source for mount in bind_mounts()] + list(secret_files().values())
    assert sources
    for source in sources:
        assert source.is_relative_to(DEPLOY), f"{source} is outside deploy/"
        if source in own:
            assert source.name in header, f"{source.name}: say how to write it"
        else:
            assert source.exists(), f"{source} is mounted but not in the repository"


def test_mounted_files_are_read_only() -> None:
    for mount in bind_mounts():
        assert mount.read_only, f"{mount.service} may write {mount.source}"


def test_the_gateway_gets_every_file_its_configuration_names() -> None:
    config = gateway_config()
    gateway = services()["gateway"]
    targets = {mount.target: mount for mount in bind_mounts() if mount.service == "gateway"}
    assert config["auth"]["users_file"] in targets, "the users file is not mounted"
    users = targets[config["auth"]["users_file"]]
    assert users.read_only and users.source in site_files()
    # The long syntax: a missing users file stops `up` instead of becoming a folder.
    long_form = [v for v in gateway["volumes"] if isinstance(v, dict)]
    assert any(
        v["target"] == users.target and v["bind"]["create_host_path"] is False for v in long_form
    )
    assert "/etc/xcap-gateway/gateway.toml" in targets
    assert targets["/etc/xcap-gateway/gateway.toml"].source == DEPLOY / "gateway-compose.toml"
    for source in config["sources"].values():
        if "password_file" in source:
            secret = Path(source["password_file"])
            assert secret.parent == Path("/run/secrets"), secret
            assert secret.name in gateway["secrets"]
    state = config["server"]["state_dir"]
    assert any(isinstance(v, str) and v.split(":")[1] == state for v in gateway["volumes"]), (
        "state_dir must be a volume: it holds the outbox"
    )


def test_prometheus_scrapes_the_gateways_metrics_listener() -> None:
    prometheus = services()["prometheus"]
    mounts = {m.target: m.source for m in bind_mounts() if m.service == "prometheus"}
    config_flag = next(a for a in prometheus["command"] if a.startswith("--config.file="))
    config_file = mounts[config_flag.split("=", 1)[1]]
    scrape = yaml.safe_load(config_file.read_text(encoding="utf-8"))["scrape_configs"]
    job = next(job for job in scrape if job["job_name"] == "xcap-gateway")
    assert job.get("metrics_path", "/metrics") == "/metrics"
    targets = [t for group in job["static_configs"] for t in group["targets"]]
    metrics_listen = gateway_config()["server"]["metrics_listen"]
    assert isinstance(metrics_listen, str), "one ops listener, the one Prometheus scrapes"
    assert targets == [f"gateway:{port_of(metrics_listen)}"]
    # The ops port serves the health check too, and is not published to the phones.
    gateway = services()["gateway"]
    health = urlsplit(gateway["environment"]["XCAP_HEALTH_URL"])
    assert health.port == port_of(metrics_listen) and health.path == "/healthz"
    published = {str(p).rsplit(":", 1)[-1] for p in gateway["ports"]}
    assert str(port_of(metrics_listen)) not in published


def test_grafana_is_provisioned_with_prometheus_and_the_dashboard() -> None:
    grafana = services()["grafana"]
    mounts = {m.target: m.source for m in bind_mounts() if m.service == "grafana"}
    sources_dir = mounts["/etc/grafana/provisioning/datasources"]
    (datasource,) = [
        d
        for f in sorted(sources_dir.glob("*.yaml"))
        for d in yaml.safe_load(f.read_text(encoding="utf-8"))["datasources"]
    ]
    assert datasource["type"] == "prometheus"
    url = urlsplit(datasource["url"])
    assert url.hostname == "prometheus" and "prometheus" in services()
    container_port = services()["prometheus"]["ports"][0].rsplit(":", 1)[-1]
    assert str(url.port) == container_port

    providers_dir = mounts["/etc/grafana/provisioning/dashboards"]
    (provider,) = [
        p
        for f in sorted(providers_dir.glob("*.yaml"))
        for p in yaml.safe_load(f.read_text(encoding="utf-8"))["providers"]
    ]
    dashboards = mounts[provider["options"]["path"]]
    assert (dashboards / "xcap-gateway.json").is_file()
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith(provider["options"]["path"] + "/")
    assert (dashboards / Path(home).name).is_file()
    # No default password: the admin's comes from a site secret.
    password = grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD__FILE"]
    assert Path(password).name in grafana["secrets"]
    assert secret_files()[Path(password).name] in site_files()
