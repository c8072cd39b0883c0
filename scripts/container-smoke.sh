#!/usr/bin/env bash
# Builds the image with podman from a locally made Debian base (no registry needed),
# starts it with the demo configuration, fetches tbook.xml, PUTs an edit, and stops it.
# Needs root, podman, runc and debootstrap (Debian packages).
#
# Each run has its own image tag, container name and work folder, so two clones can run it
# at once, and removes all three when it ends (XCAP_SMOKE_KEEP=1 keeps them for a look).
# It keeps one thing: the Debian base image it makes the first time (podman image
# docker.io/library/debian:bookworm-slim, ~80 MB; `podman image rm` it to take it back).
set -euo pipefail
cd "$(dirname "$0")/.."
run_id=$(date +%s)-$$
image=localhost/xcap-gateway:smoke-$run_id
name=xcap-smoke-$run_id
if [ -n "${XCAP_SMOKE_DIR:-}" ]; then
    work=$XCAP_SMOKE_DIR/$run_id
    mkdir -p "$work"
else
    work=$(mktemp -d /var/tmp/xcap-gateway-smoke.XXXXXX)
fi
echo "image=$image container=$name work=$work"

cleanup() {
    if [ "${XCAP_SMOKE_KEEP:-}" = 1 ]; then
        echo "kept (XCAP_SMOKE_KEEP=1): image $image, container $name, folder $work"
        return
    fi
    podman rm -f "$name" >/dev/null 2>&1 || true
    podman image rm -f "$image" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

export CONTAINERS_CONF="$work/containers.conf"
cat > "$CONTAINERS_CONF" <<'CONF'
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
CONF

# Exit 77 (the tests' "skip") only when podman cannot run here at all.
if ! podman info >"$work/podman-info.log" 2>&1; then
    echo "podman cannot run here: $(tail -n 1 "$work/podman-info.log")"
    exit 77
fi

if ! podman image exists docker.io/library/debian:bookworm-slim; then
    echo "making the base image docker.io/library/debian:bookworm-slim with debootstrap (kept for the next run)"
    rm -rf "$work/rootfs"
    debootstrap --variant=minbase bookworm "$work/rootfs" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" \
        >"$work/debootstrap.log"
    tar -C "$work/rootfs" -c . | podman import - docker.io/library/debian:bookworm-slim >/dev/null
fi
# pip inside the build trusts what the host trusts (PIP_CERT, else the system bundle), so a
# TLS-intercepting proxy between this machine and PyPI does not break the build.
ca_args=()
ca_file=${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}
if [ -f "$ca_file" ]; then
    ca_args=(-v "$ca_file:/run/build-ca.crt:ro" --build-arg PIP_CERT=/run/build-ca.crt)
fi
# --layers=false: no intermediate images are left behind to pile up run after run.
if ! podman build --pull=never --layers=false --format docker "${ca_args[@]}" -t "$image" . >"$work/build.log" 2>&1; then
    tail -n 30 "$work/build.log"
    exit 1
fi

# The shipped configuration, on a free port, mounted as the configuration volume.
port=${XCAP_SMOKE_PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
sed "s/0.0.0.0:8080/127.0.0.1:$port/" config/container.toml >"$work/gateway.toml"
chmod 644 "$work/gateway.toml"
podman run -d --name "$name" --network host -v "$work/gateway.toml:/etc/xcap-gateway/gateway.toml:ro" \
    -e "XCAP_HEALTH_URL=http://127.0.0.1:$port/healthz" "$image" >/dev/null 2>"$work/run.log"
url=http://127.0.0.1:$port/users/sip:alice@example.com/tbook.xml
for _ in $(seq 50); do curl -sf -o "$work/tbook.xml" "$url" && break; sleep 0.2; done
count=$(grep -c '<entry>' "$work/tbook.xml")
sed 's/Leiterin Einkauf/Head of Purchasing/' "$work/tbook.xml" >"$work/edited.xml"
status=$(curl -s -o /dev/null -w '%{http_code}' -X PUT --data-binary @"$work/edited.xml" "$url")
# The edit is applied from the outbox just after the answer.
for _ in $(seq 50); do
    title=$(podman exec "$name" grep '^TITLE' /srv/xcap-gateway/contacts/anna.mueller.vcf | tr -d '\r')
    [ "$title" = "TITLE:Head of Purchasing" ] && break
    sleep 0.1
done
user=$(podman exec "$name" id -un)
echo "entries=$count put=$status $title user=$user"
health=$(podman healthcheck run "$name" 2>/dev/null || echo unhealthy)
[ -z "$health" ] && health=healthy
echo "healthcheck: $health"
# sort_locale's collator (Debian's PyICU through the venv's system site packages).
swedish=$(podman exec "$name" python3 -c 'from gateway.listing import locale_error, ordered; from gateway.entry import Entry; print(locale_error("sv"), [e.display_name for e in ordered([Entry(n, n) for n in ("Zorn", "Åsa")], locale="sv")])')
echo "sort_locale: $swedish"
[ "$count" -ge 25 ] && [ "$health" = healthy ] && [ "$status" = 200 ] && [ "$title" = "TITLE:Head of Purchasing" ] && [ "$user" = xcap ]
