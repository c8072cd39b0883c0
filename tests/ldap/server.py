"""A private slapd for tests: configured in a temp folder, seeded offline with slapadd,
listening on 127.0.0.1 (ldap://, and ldaps:// with a trustme CA), stopped at the end."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import trustme

from tests.support import stop_process, wait_listening

SLAPD = Path("/usr/sbin/slapd")
SLAPADD = Path("/usr/sbin/slapadd")
SCHEMA = Path(__file__).with_name("ad-like.schema")
SUFFIX = "dc=example,dc=com"
ADMIN_DN = f"cn=admin,{SUFFIX}"
ADMIN_PASSWORD = "admin-secret"
READER_DN = f"cn=reader,{SUFFIX}"  # size limit 500, as a non-root bind DN has by default
WRITER_DN = f"cn=writer,{SUFFIX}"
SERVICE_PASSWORD = "service-secret"
PEOPLE = f"ou=people,{SUFFIX}"
CONTACTS = f"ou=phone-contacts,{SUFFIX}"


@dataclass
class Slapd:
    folder: Path
    port: int
    tls_port: int
    ca: trustme.CA
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://localhost:{self.tls_port}"

    @property
    def ca_file(self) -> Path:
        return self.folder / "ca.pem"

    def start(self) -> None:
        with open(self.folder / "slapd.log", "wb") as log:
            self.process = subprocess.Popen(
                [
                    str(SLAPD),
                    "-f",
                    str(self.folder / "slapd.conf"),
                    "-d",
                    "0",
                    "-h",
                    f"{self.url}/ ldaps://127.0.0.1:{self.tls_port}/",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_listening(self.process, self.port, self.folder / "slapd.log", seconds=15)

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None


def write_config(folder: Path, ca: trustme.CA, reader_prtotal: str = "unlimited") -> None:
    (folder / "db").mkdir(exist_ok=True)
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(str(folder / "server.pem"))
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    schemas = [
        f"/etc/ldap/schema/{name}.schema" for name in ("core", "cosine", "inetorgperson", "nis")
    ]
    includes = "\n".join(f"include {path}" for path in [*schemas, str(SCHEMA)])
    (folder / "slapd.conf").write_text(f"""{includes}
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload syncprov
pidfile {folder}/slapd.pid
argsfile {folder}/slapd.args
TLSCertificateFile {folder}/server.pem
TLSCertificateKeyFile {folder}/server.pem
sizelimit 500

database mdb
suffix "{SUFFIX}"
rootdn "{ADMIN_DN}"
rootpw {ADMIN_PASSWORD}
directory {folder}/db
dbnosync
maxsize 1073741824
index objectClass,entryCSN,entryUUID eq
index modifyTimestamp eq
limits dn.exact="{READER_DN}" size.soft=500 size.hard=500 size.prtotal={reader_prtotal}
limits dn.exact="{WRITER_DN}" size=unlimited
access to attrs=userPassword by anonymous auth by * none
access to dn.subtree="{SUFFIX}" by dn.exact="{WRITER_DN}" write by users read by * none
overlay syncprov
syncprov-checkpoint 100 10
syncprov-sessionlog 1000
""")


def base_ldif() -> str:
    return f"""dn: {SUFFIX}
objectClass: dcObject
objectClass: organization
o: Example
dc: example

dn: {READER_DN}
objectClass: applicationProcess
objectClass: simpleSecurityObject
cn: reader
userPassword: {SERVICE_PASSWORD}

dn: {WRITER_DN}
objectClass: applicationProcess
objectClass: simpleSecurityObject
cn: writer
userPassword: {SERVICE_PASSWORD}

dn: {PEOPLE}
objectClass: organizationalUnit
ou: people

dn: {CONTACTS}
objectClass: organizationalUnit
ou: phone-contacts

"""


def seed(folder: Path, ldif: str) -> None:
    (folder / "seed.ldif").write_text(ldif, encoding="utf-8")
    subprocess.run(
        [str(SLAPADD), "-q", "-f", str(folder / "slapd.conf"), "-l", str(folder / "seed.ldif")],
        check=True,
        capture_output=True,
    )


def person_ldif(index: int, extra: Iterable[str] = ()) -> str:
    lines = [
        f"dn: uid=user{index:06d},{PEOPLE}",
        "objectClass: inetOrgPerson",
        "objectClass: adUser",
        f"uid: user{index:06d}",
        f"cn: Person {index:06d}",
        f"displayName: Person {index:06d}",
        "givenName: Person",
        f"sn: {index:06d}",
        "title: Engineer",
        "o: Example",
        f"mail: user{index:06d}@example.com",
        f"telephoneNumber: +49 30 {1000000 + index}",
        f"mobile: +49 171 {1000000 + index}",
        *extra,
    ]
    return "\n".join(lines) + "\n\n"


def ensure_installed() -> None:
    if not (SLAPD.exists() and SLAPADD.exists() and shutil.which("ldapsearch")):
        raise RuntimeError(
            "slapd and ldap-utils are needed: apt-get install slapd ldap-utils (make test does it)"
        )


def admin_connection(server: Slapd):  # type: ignore[no-untyped-def]
    """An ldap3 connection bound as the root DN, for changing the directory in tests."""
    from ldap3 import Connection

    return Connection(server.url, ADMIN_DN, ADMIN_PASSWORD, auto_bind=True)
