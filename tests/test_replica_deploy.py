"""deploy/replicas/ (compose: PostgreSQL, two gateways, HAProxy) and
deploy/kubernetes-replicas.yaml: they parse, the replicas keep no state of their own, share
one read-only configuration whose [store] is PostgreSQL with its password in a secret file,
and the proxy and the gateways agree on names, ports and the health check. With `haproxy`
installed, its own parser checks haproxy.cfg too."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from gateway.config import Config
from tests.conftest import DEMO_CONTACTS, ROOT

REPLICAS = ROOT / "deploy" / "replicas"
COMPOSE = REPLICAS / "compose.yaml"
GATEWAY_TOML = REPLICAS / "gateway.toml"
HAPROXY_CFG = REPLICAS / "haproxy.cfg"
KUBERNETES = ROOT / "deploy" / "kubernetes-replicas.yaml"

GATEWAYS = ("gateway-1", "gateway-2")
CONFIG_TARGET = "/etc/xcap-gateway/gateway.toml"
HAPROXY_TARGET = "/usr/local/etc/haproxy/haproxy.cfg"
#: The image's demo cards (Dockerfile: COPY config/contacts /srv/xcap-gateway/contacts).
IMAGE_CONTACTS = "/srv/xcap-gateway/contacts"


# --- compose ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Mount:
    service: str
    source: Path  # on the host, resolved against deploy/replicas/
    target: str
    read_only: bool


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return loaded


def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose()["services"]
    return found


def volume_entries(service: dict[str, Any]) -> list[tuple[str, str, str, bool]]:
    """(kind, source, target, read_only) of each volume: kind "bind" or "volume"."""
    entries = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target, *mode = volume.split(":")
            kind = "bind" if source.startswith((".", "/")) else "volume"
            read_only = bool(mode) and "ro" in mode[0].split(",")
        else:
            kind, source, target = volume["type"], volume.get("source", ""), volume["target"]
            read_only = bool(volume.get("read_only"))
        entries.append((kind, source, target, read_only))
    return entries


def bind_mounts() -> list[Mount]:
    return [
        Mount(name, (REPLICAS / source).resolve(), target, read_only)
        for name, service in services().items()
        for kind, source, target, read_only in volume_entries(service)
        if kind == "bind"
    ]


def secret_files() -> dict[str, Path]:
    return {
        name: (REPLICAS / secret["file"]).resolve() for name, secret in compose()["secrets"].items()
    }


def site_files() -> set[Path]:
    """What deploy/replicas/.gitignore keeps out of git: each site's own files."""
    lines = (REPLICAS / ".gitignore").read_text(encoding="utf-8").splitlines()
    return {
        (REPLICAS / line.lstrip("/")).resolve()
        for line in lines
        if line.strip() and not line.startswith("#")
    }


def gateway_config() -> dict[str, Any]:
    return tomllib.loads(GATEWAY_TOML.read_text(encoding="utf-8"))


def port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def listen_ports(config: dict[str, Any], key: str) -> set[int]:
    value = config["server"].get(key, [])
    return {port_of(a) for a in ([value] if isinstance(value, str) else value)}


def test_the_compose_file_has_a_database_two_gateways_and_a_proxy() -> None:
    document = compose()
    assert set(document["services"]) == {"db", *GATEWAYS, "proxy"}
    declared_volumes = set(document.get("volumes") or {})
    declared_secrets = set(document.get("secrets") or {})
    for name, service in document["services"].items():
        assert "image" in service or "build" in service, name
        for kind, source, _, _ in volume_entries(service):
            if kind == "volume":
                assert source in declared_volumes, f"{name}: volume {source}"
        for secret in service.get("secrets", []):
            assert secret in declared_secrets, f"{name}: secret {secret}"
        for other in service.get("depends_on", []):
            assert other in document["services"], f"{name} depends on {other}"


@pytest.mark.parametrize("name", ["db", "proxy"])
def test_pulled_images_are_pinned(name: str) -> None:
    image = services()[name]["image"]
    reference = image.rsplit("/", 1)[-1]
    tag = reference.split("@")[0].partition(":")[2]
    assert "@sha256:" in reference or (tag and tag != "latest" and any(c.isdigit() for c in tag)), (
        image
    )


def test_the_gateways_are_the_projects_image_and_alike() -> None:
    """Two replicas of one container: built from the repository's Dockerfile, identical
    but for their names (a difference would make the same request answer differently)."""
    first, second = (services()[name] for name in GATEWAYS)
    assert first == second
    build = first["build"]
    context = build if isinstance(build, str) else build["context"]
    assert (REPLICAS / context).resolve() == ROOT
    assert (ROOT / "Dockerfile").is_file()
    assert "ports" not in first, "the phones reach the gateways through the proxy only"


def test_the_gateways_wait_for_a_healthy_database() -> None:
    db = services()["db"]
    check = db["healthcheck"]["test"]
    command = check if isinstance(check, str) else " ".join(check)
    assert "pg_isready" in command
    # Over TCP: the image's initialisation server listens on the Unix socket only.
    assert re.search(r"-h\s+(127\.0\.0\.1|localhost)\b", command), command
    for name in GATEWAYS:
        depends = services()[name]["depends_on"]
        assert isinstance(depends, dict), f"{name}: depends_on must name a condition"
        assert depends["db"]["condition"] == "service_healthy", name


def test_the_database_keeps_its_data_in_a_named_volume() -> None:
    targets = {
        target: source
        for kind, source, target, _ in volume_entries(services()["db"])
        if kind == "volume"
    }
    assert "/var/lib/postgresql/data" in targets
    assert targets["/var/lib/postgresql/data"] in (compose().get("volumes") or {})


def test_the_gateways_keep_no_state_of_their_own() -> None:
    """state_dir is scratch: a tmpfs the gateway's user owns, no volume of any kind."""
    state_dir = gateway_config()["server"]["state_dir"]
    for name in GATEWAYS:
        service = services()[name]
        entries = volume_entries(service)
        assert all(kind == "bind" for kind, *_ in entries), f"{name} has a volume"
        assert state_dir not in {target for _, _, target, _ in entries}, name
        tmpfs = {
            entry.split(":", 1)[0]: entry.partition(":")[2]
            for entry in (
                [service["tmpfs"]] if isinstance(service.get("tmpfs"), str) else service["tmpfs"]
            )
        }
        assert state_dir in tmpfs, f"{name}: state_dir must be a tmpfs"
        options = dict(o.partition("=")[::2] for o in tmpfs[state_dir].split(","))
        assert options.get("uid") == "10001", "the gateway runs as 10001"


def test_every_mounted_file_is_in_the_repository_or_a_site_secret() -> None:
    header = COMPOSE.read_text(encoding="utf-8").split("\nservices:", 1)[0]
    own = site_files()
    sources = [mount.source for mount in bind_mounts()] + list(secret_files().values())
    assert sources
    for source in sources:
        assert source.is_relative_to(REPLICAS), f"{source} is outside deploy/replicas/"
        if source in own:
            assert source.name in header, f"{source.name}: say how to write it"
        else:
            assert source.exists(), f"{source} is mounted but not in the repository"


def test_mounted_files_are_read_only() -> None:
    mounts = bind_mounts()
    assert {m.service for m in mounts} >= {*GATEWAYS, "proxy"}
    for mount in mounts:
        assert mount.read_only, f"{mount.service} may write {mount.source}"


def test_every_gateway_mounts_the_one_configuration() -> None:
    for name in GATEWAYS:
        targets = {m.target: m for m in bind_mounts() if m.service == name}
        assert targets[CONFIG_TARGET].source == GATEWAY_TOML, name
        assert targets[CONFIG_TARGET].read_only, name


def test_the_configuration_stores_in_postgresql_on_the_db_service() -> None:
    config = gateway_config()
    url = config["store"]["url"]
    assert url.startswith("postgresql://")
    parts = urlsplit(url)
    assert parts.hostname == "db" and "db" in services()
    db = services()["db"]["environment"]
    assert parts.username == db["POSTGRES_USER"]
    assert parts.path.lstrip("/") == db["POSTGRES_DB"]
    assert parts.port in (None, 5432)


def test_the_database_password_comes_from_a_secret_file_not_the_url() -> None:
    config = gateway_config()
    assert urlsplit(config["store"]["url"]).password is None
    assert "password" not in config["store"]["url"].lower()
    password_file = Path(config["store"]["password_file"])
    assert password_file.parent == Path("/run/secrets"), password_file
    secret = password_file.name
    for name in GATEWAYS:
        assert secret in services()[name]["secrets"], name
    assert secret_files()[secret] in site_files(), "the password is each site's own"
    # PostgreSQL sets the same password from the same secret, never from a literal.
    db = services()["db"]
    assert db["environment"]["POSTGRES_PASSWORD_FILE"] == str(password_file)
    assert secret in db["secrets"]
    assert "POSTGRES_PASSWORD" not in db["environment"]


def test_the_demo_source_is_the_images_cards_and_read_only() -> None:
    """Each replica has its own copy of the image's folder: a phone's edit written to one
    would be undone by the other's sync, so a per-container folder is never written."""
    config = gateway_config()
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(rf"^COPY .*config/contacts {IMAGE_CONTACTS}$", dockerfile, re.M)
    folders = {k: s for k, s in config["sources"].items() if s["type"] == "vcard-dir"}
    assert [s["path"] for s in folders.values()] == [IMAGE_CONTACTS]
    for key, source in folders.items():
        assert source.get("read_only") is True, key
    for document in config["documents"].values():
        assert document.get("write_to") not in folders
    assert config["documents"]


# --- HAProxy -----------------------------------------------------------------------------


def haproxy_sections() -> dict[str, list[list[str]]]:
    """ "backend gateways" -> its lines, each split into words (comments dropped)."""
    sections: dict[str, list[list[str]]] = {}
    current: list[list[str]] | None = None
    for raw in HAPROXY_CFG.read_text(encoding="utf-8").splitlines():
        words = raw.split("#", 1)[0].split()
        if not words:
            continue
        if not raw[0].isspace():
            current = sections.setdefault(" ".join(words), [])
        else:
            assert current is not None, raw
            current.append(words)
    return sections


def directive(lines: list[list[str]], *keyword: str) -> list[list[str]]:
    """The lines that start with `keyword`, without it."""
    n = len(keyword)
    return [line[n:] for line in lines if tuple(line[:n]) == keyword]


def phones_frontend() -> tuple[list[list[str]], list[list[str]]]:
    """The frontend the published port reaches, and the backend it sends to."""
    sections = haproxy_sections()
    (frontend,) = [lines for name, lines in sections.items() if name.startswith("frontend ")]
    ((backend_name,),) = directive(frontend, "default_backend")
    return frontend, sections[f"backend {backend_name}"]


def test_the_proxy_mounts_its_configuration() -> None:
    targets = {m.target: m for m in bind_mounts() if m.service == "proxy"}
    assert targets[HAPROXY_TARGET].source == HAPROXY_CFG and targets[HAPROXY_TARGET].read_only


def test_only_the_proxy_publishes_a_port_and_it_is_the_one_haproxy_binds() -> None:
    published = {name for name, service in services().items() if service.get("ports")}
    assert published == {"proxy"}
    (port,) = services()["proxy"]["ports"]
    container_port = int(str(port).rsplit(":", 1)[-1].split("/")[0])
    frontend, _ = phones_frontend()
    binds = {port_of(words[0]) for words in directive(frontend, "bind")}
    assert binds == {container_port}


def test_the_proxy_spreads_over_both_replicas_on_their_listen_port() -> None:
    _, backend = phones_frontend()
    servers = {words[0]: words[1] for words in directive(backend, "server")}
    assert set(servers) == set(GATEWAYS)
    (listen,) = listen_ports(gateway_config(), "listen")
    for name, address in servers.items():
        host, port = address.rsplit(":", 1)
        assert host == name and host in services(), address
        assert int(port) == listen, f"{name}: the gateways listen on {listen}"
    assert directive(backend, "balance") == [["roundrobin"]]


def test_the_proxy_checks_each_replica_on_healthz() -> None:
    _, backend = phones_frontend()
    checked = directive(backend, "option", "httpchk")
    sent = directive(backend, "http-check", "send")
    assert checked, "no HTTP health check"
    request = checked[0] or next(iter(sent), [])
    assert "/healthz" in request and "GET" in [w.upper() for w in request], request
    # Every server is checked, itself or through default-server.
    defaults = [w for words in directive(backend, "default-server") for w in words]
    for words in directive(backend, "server"):
        assert "check" in words[2:] or "check" in defaults, words[0]
    # The listener it checks is the one it forwards to: /healthz is on the main listener.
    assert not any("port" in words[2:] for words in directive(backend, "server"))
    assert "port" not in defaults


def test_the_proxy_stays_inside_the_gateways_connection_limits() -> None:
    """The gateways see only the proxy's address: their per-address cap must admit all the
    proxy sends, and the proxy queues before a gateway's own limit closes connections."""
    server = gateway_config()["server"]
    _, backend = phones_frontend()
    defaults = [w for words in directive(backend, "default-server") for w in words]
    per_server = int(defaults[defaults.index("maxconn") + 1])
    assert per_server <= server.get("max_connections", 1000)
    assert server["max_connections_per_address"] >= per_server
    # The per-phone cap the gateways cannot apply is applied here.
    frontend, _ = phones_frontend()
    assert directive(frontend, "tcp-request", "connection", "track-sc0")
    rejects = directive(frontend, "tcp-request", "connection", "reject")
    assert any("sc0_conn_cur" in words for words in rejects)


def test_haproxy_accepts_the_configuration(tmp_path: Path) -> None:
    haproxy = shutil.which("haproxy") or next(
        (p for p in ("/usr/sbin/haproxy", "/usr/local/sbin/haproxy") if Path(p).is_file()),
        None,
    )
    if haproxy is None:
        pytest.skip("haproxy is not installed (apt-get install haproxy): parsed by hand only")
    result = subprocess.run(
        [haproxy, "-c", "-f", str(HAPROXY_CFG)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # Outside the compose network the replicas' names do not resolve (init-addr none keeps
    # them down until they do); any other warning is a mistake in the file.
    warnings = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if "[WARNING]" in line and "could not resolve address" not in line
    ]
    assert not warnings, warnings


# --- Kubernetes --------------------------------------------------------------------------


def manifests() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(KUBERNETES.read_text(encoding="utf-8")) if d is not None]


def manifest(kind: str) -> dict[str, Any]:
    (found,) = [d for d in manifests() if d["kind"] == kind]
    return found


def configmap_toml() -> str:
    text: str = manifest("ConfigMap")["data"]["gateway.toml"]
    return text


def pod_spec() -> dict[str, Any]:
    spec: dict[str, Any] = manifest("Deployment")["spec"]["template"]["spec"]
    return spec


def container() -> dict[str, Any]:
    (found,) = pod_spec()["containers"]
    result: dict[str, Any] = found
    return result


def mounts_by_path() -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """mountPath -> (the volumeMount, the pod volume it mounts)."""
    volumes = {v["name"]: v for v in pod_spec()["volumes"]}
    return {m["mountPath"]: (m, volumes[m["name"]]) for m in container()["volumeMounts"]}


def test_the_manifest_has_its_kinds_and_no_database_or_claim() -> None:
    kinds = [d["kind"] for d in manifests()]
    assert sorted(kinds) == sorted(
        ["ConfigMap", "Secret", "Deployment", "Service", "PodDisruptionBudget"]
    )
    # PostgreSQL is an operator's (said in the header), and nothing claims a disk.
    header = KUBERNETES.read_text(encoding="utf-8").split("\napiVersion:", 1)[0]
    assert "operator" in header
    assert "PersistentVolumeClaim" not in kinds and "StatefulSet" not in kinds


def test_the_deployment_runs_two_replicas_that_roll_without_a_gap() -> None:
    deployment = manifest("Deployment")["spec"]
    assert deployment["replicas"] == 2
    assert deployment["strategy"]["type"] == "RollingUpdate"
    assert deployment["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    labels = deployment["template"]["metadata"]["labels"]
    assert deployment["selector"]["matchLabels"].items() <= labels.items()
    budget = manifest("PodDisruptionBudget")["spec"]
    assert 1 <= budget["minAvailable"] < deployment["replicas"]
    assert budget["selector"]["matchLabels"].items() <= labels.items()


def test_the_pods_keep_no_state_of_their_own() -> None:
    config = tomllib.loads(configmap_toml())
    assert not any("persistentVolumeClaim" in v for v in pod_spec()["volumes"])
    _, volume = mounts_by_path()[config["server"]["state_dir"]]
    assert "emptyDir" in volume, "state_dir is scratch: an emptyDir"


def test_the_configuration_comes_from_the_configmap_read_only() -> None:
    mount, volume = mounts_by_path()[CONFIG_TARGET]
    assert volume["configMap"]["name"] == manifest("ConfigMap")["metadata"]["name"]
    assert mount["subPath"] == "gateway.toml" and mount.get("readOnly") is True
    config = tomllib.loads(configmap_toml())
    assert config["store"]["url"].startswith("postgresql://")


def test_the_database_password_is_a_secret_file_not_in_the_url() -> None:
    config = tomllib.loads(configmap_toml())
    assert urlsplit(config["store"]["url"]).password is None
    secret = manifest("Secret")
    files = [config["store"]["password_file"], config["auth"]["users_file"]] + [
        s["password_file"] for s in config["sources"].values() if "password_file" in s
    ]
    mounts = mounts_by_path()
    for file in files:
        path = Path(file)
        assert str(path.parent) in mounts, f"{file} is not mounted"
        mount, volume = mounts[str(path.parent)]
        assert mount.get("readOnly") is True, file
        assert volume["secret"]["secretName"] == secret["metadata"]["name"], file
        (item,) = [i for i in volume["secret"]["items"] if i["path"] == path.name]
        assert item["key"] in secret["stringData"], file


def test_the_probes_and_the_service_use_the_gateways_ports() -> None:
    config = tomllib.loads(configmap_toml())
    ports = {p["name"]: p["containerPort"] for p in container()["ports"]}
    assert {ports["http"]} == listen_ports(config, "listen")
    liveness = container()["livenessProbe"]["httpGet"]
    readiness = container()["readinessProbe"]["httpGet"]
    assert liveness["path"] == "/healthz"
    assert readiness["path"] in ("/healthz", "/readyz")
    # /healthz and /readyz answer on the main listener and on the ops listener.
    answering = listen_ports(config, "listen") | listen_ports(config, "metrics_listen")
    for probe in (liveness, readiness):
        assert ports.get(probe["port"], probe["port"]) in answering, probe
    service = manifest("Service")["spec"]
    labels = manifest("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["selector"].items() <= labels.items()
    assert [p["targetPort"] for p in service["ports"]] == ["http"]


# --- check-config ------------------------------------------------------------------------


def substituted(text: str, tmp_path: Path) -> str:
    """The configuration with its container paths replaced by stand-ins on this host."""
    replacements = {
        IMAGE_CONTACTS: str(DEMO_CONTACTS),
        "/var/lib/xcap-gateway": str(tmp_path / "state"),
    }
    realm = tomllib.loads(text).get("auth", {}).get("realm", "xcap")
    for secret in re.findall(r'"(/(?:run/secrets|etc/xcap-gateway)/[^"]+)"', text):
        stand_in = tmp_path / Path(secret).name
        stand_in.write_text(
            f"alice:{realm}:{'0' * 32}\n" if "htdigest" in secret else "secret\n",
            encoding="utf-8",
        )
        replacements[secret] = str(stand_in)
    for old, new in replacements.items():
        text = text.replace(f'"{old}"', f'"{new}"')
    return text


@pytest.mark.parametrize("name", ["compose", "kubernetes"])
def test_check_config_accepts_the_configuration(name: str, tmp_path: Path) -> None:
    if "store" not in Config.model_fields:
        pytest.skip("the configuration knows no [store] yet")
    text = GATEWAY_TOML.read_text(encoding="utf-8") if name == "compose" else configmap_toml()
    path = tmp_path / "gateway.toml"
    path.write_text(substituted(text, tmp_path), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
