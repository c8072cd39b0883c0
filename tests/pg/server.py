"""A private PostgreSQL for tests, from Debian's binaries (/usr/lib/postgresql/<version>/bin):
initdb in a temp folder (trust authentication, superuser `xcap`), the postmaster in the
foreground listening on 127.0.0.1, stopped (or killed, for crash tests) by the test.

PostgreSQL refuses to run as root: as root every binary runs through `runuser -u postgres --`
in a folder the postgres user owns (under /tmp when the test's folder is not reachable for
it: pytest's temp folders are 0700 root)."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from tests.support import free_port

PG_LIB = Path("/usr/lib/postgresql")
SUPERUSER = "xcap"
DATABASE = "xcap"
RUN_AS = "postgres"  # the Debian package's system user, when the tests run as root
# The Unix socket (folder/.s.PGSQL.PORT) must fit sun_path's 107 characters.
MAX_FOLDER_LENGTH = 80


def find_bindir() -> Path | None:
    """The newest installed version's bin folder, or None without the `postgresql` package."""
    found: list[tuple[tuple[int, ...], Path]] = []
    for postgres in PG_LIB.glob("*/bin/postgres"):
        version = postgres.parent.parent.name
        if re.fullmatch(r"\d+(\.\d+)*", version):
            found.append((tuple(int(part) for part in version.split(".")), postgres.parent))
    return max(found)[1] if found else None


def ensure_installed() -> Path:
    bindir = find_bindir()
    if bindir is None:
        raise RuntimeError(
            "PostgreSQL is needed: apt-get install postgresql (make test does it as root)"
        )
    if as_root() and not user_exists(RUN_AS):
        raise RuntimeError(f"running as root, PostgreSQL needs the {RUN_AS!r} user to run as")
    return bindir


def as_root() -> bool:
    return os.geteuid() == 0


def postgres_user_can_write(folder: Path) -> bool:
    result = subprocess.run(
        ["runuser", "-u", RUN_AS, "--", "test", "-w", str(folder), "-a", "-x", str(folder)],
        capture_output=True,
    )
    return result.returncode == 0


@dataclass
class Postgres:
    """One instance: `folder` keeps the log (postgres.log); the cluster lives in `home`
    (`folder`/pg, or a private folder under /tmp removed by `close()`)."""

    folder: Path
    port: int
    fsync: bool = False
    process: subprocess.Popen[bytes] | None = None
    home: Path | None = field(default=None, repr=False)
    private_home: bool = field(default=False, repr=False)

    @property
    def url(self) -> str:
        return self.database_url(DATABASE)

    def database_url(self, name: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{name}"

    @property
    def log(self) -> Path:
        return self.folder / "postgres.log"

    @property
    def data(self) -> Path:
        assert self.home is not None, "not started"
        return self.home / "data"

    def command(self, *args: str) -> list[str]:
        program = [str(ensure_installed() / args[0]), *args[1:]]
        return ["runuser", "-u", RUN_AS, "--", *program] if as_root() else program

    def prepare(self) -> None:
        """Choose and create `home`, owned by the user PostgreSQL runs as."""
        if self.home is not None:
            return
        home = self.folder / "pg"
        home.mkdir(parents=True, exist_ok=True)
        if as_root():
            shutil.chown(home, RUN_AS, RUN_AS)
        if len(str(home)) > MAX_FOLDER_LENGTH or (as_root() and not postgres_user_can_write(home)):
            home.rmdir()
            home = Path(tempfile.mkdtemp(prefix="xcap-pg-", dir="/tmp"))
            home.chmod(0o755)
            if as_root():
                shutil.chown(home, RUN_AS, RUN_AS)
            self.private_home = True
        self.home = home

    def initdb(self) -> None:
        result = subprocess.run(
            self.command(
                "initdb",
                "-D",
                str(self.data),
                "-A",
                "trust",
                "-U",
                SUPERUSER,
                "--encoding=UTF8",
                "--locale=C",
                *([] if self.fsync else ["--no-sync"]),
            ),
            cwd=self.home,
            stdin=subprocess.DEVNULL,
            capture_output=True,
        )
        if result.returncode != 0:
            raise RuntimeError(
                "initdb failed:\n" + (result.stdout + result.stderr).decode(errors="replace")
            )

    def start(self, seconds: float = 30) -> None:
        """initdb on the first start; return once the server accepts connections (and the
        `xcap` database exists), RuntimeError with the log if it exits or never does."""
        assert self.process is None or self.process.poll() is not None, "already running"
        self.prepare()
        if not (self.data / "PG_VERSION").exists():
            self.initdb()
        settings = {
            "listen_addresses": "127.0.0.1",
            "max_connections": "200",
            "fsync": "on" if self.fsync else "off",
        }
        options = [part for key, value in settings.items() for part in ("-c", f"{key}={value}")]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                self.command(
                    "postgres", "-D", str(self.data), "-p", str(self.port), "-k", str(self.home)
                )
                + options,
                cwd=self.home,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.wait_ready(seconds)
        with psycopg.connect(self.database_url("postgres"), autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE]).fetchone():
                return
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))

    def wait_ready(self, seconds: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + seconds
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"postgres exited ({self.process.returncode}):\n" + self.log_text()
                )
            try:
                with psycopg.connect(self.database_url("postgres"), connect_timeout=2):
                    return
            except psycopg.OperationalError as error:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"postgres does not accept connections on {self.port} after {seconds} s"
                        f" ({error}):\n" + self.log_text()
                    ) from error
                time.sleep(0.02)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else "(no log)"

    def postmaster_pid(self) -> int | None:
        """The running postmaster's pid (with runuser, the Popen's pid is runuser's)."""
        if self.process is None or self.process.poll() is not None:
            return None
        if not as_root():
            return self.process.pid
        try:
            pid = int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            pid = None  # not written yet, or being removed at exit
        # After kill() the file names the dead postmaster until the new one rewrites it.
        if pid is not None and parent_of(pid) == self.process.pid:
            return pid
        children = children_of(self.process.pid)
        return children[0] if children else None

    def stop(self, fast: bool = True, seconds: float = 30) -> None:
        """Shut down (SIGINT: fast, rolling back sessions; SIGTERM: smart, waiting for them)
        and wait; SIGKILL and RuntimeError if it takes longer than `seconds`. The data stays:
        start() again, or close() to remove it."""
        process = self.process
        if process is None or process.poll() is not None:
            self.process = None
            return
        pid = self.postmaster_pid()
        if pid is not None:
            os.kill(pid, signal.SIGINT if fast else signal.SIGTERM)
        else:
            process.terminate()  # runuser passes SIGTERM on (and SIGKILLs 2 s later)
        try:
            process.wait(timeout=seconds)
        except subprocess.TimeoutExpired as error:
            self.kill()
            raise RuntimeError(
                f"postgres did not stop within {seconds} s:\n" + self.log_text()
            ) from error
        self.process = None

    def kill(self, seconds: float = 30) -> None:
        """SIGKILL the postmaster, as a crash, and wait until its backends noticed and exited
        too (a new postmaster refuses to start while they hold the old shared memory)."""
        process = self.process
        if process is None or process.poll() is not None:
            self.process = None
            return
        pid = self.postmaster_pid()
        if pid is None:
            process.kill()
            process.wait()
            self.process = None
            return
        os.kill(pid, signal.SIGKILL)
        process.wait(timeout=seconds)
        self.process = None
        deadline = time.monotonic() + seconds
        while alive := working_in(self.data):
            if time.monotonic() > deadline:
                raise RuntimeError(f"postgres backends {alive} outlived the killed postmaster")
            time.sleep(0.02)

    def restart(self, fast: bool = True) -> None:
        self.stop(fast)
        self.start()

    def close(self) -> None:
        """Stop, and remove the cluster if it lives in a private folder under /tmp."""
        try:
            self.stop()
        finally:
            if self.private_home and self.home is not None:
                shutil.rmtree(self.home, ignore_errors=True)
                self.home = None
                self.private_home = False

    def create_database(self, name: str) -> str:
        """A fresh database `name`; its URL."""
        with psycopg.connect(self.database_url("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.database_url(name)

    def drop_database(self, name: str) -> None:
        """Drop `name`, ending the connections still open to it."""
        with psycopg.connect(self.database_url("postgres"), autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                [name],
            )
            # FORCE: a pool may have reconnected in between.
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def launch(folder: Path, fsync: bool = False, attempts: int = 3) -> Postgres:
    """A started instance in `folder` on a free port."""
    server = Postgres(folder, free_port(), fsync)
    for attempt in range(attempts):
        try:
            server.start()
            return server
        except RuntimeError:
            # A port found free can be taken by another socket before postgres binds it.
            server.stop()
            if attempt == attempts - 1:
                server.close()
                raise
            server.port = free_port()
    raise AssertionError("unreachable")


def parent_of(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def children_of(pid: int) -> list[int]:
    return [
        int(proc.name)
        for proc in Path("/proc").iterdir()
        if proc.name.isdigit() and parent_of(int(proc.name)) == pid
    ]


def working_in(folder: Path) -> list[int]:
    """Live processes (not zombies: those hold no shared memory) whose working directory is
    `folder`: a postmaster's backends, which chdir to the data folder. Orphaned by a killed
    postmaster they are no longer its children, and each is its own session leader."""
    target = str(folder.resolve())
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if os.readlink(proc / "cwd") != target:
                continue
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue  # gone, or not ours to look at
        if state != "Z":
            pids.append(int(proc.name))
    return pids


def user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True
