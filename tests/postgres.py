"""A real PostgreSQL server for the sweep tests: the one ``.ci/run`` started, or one started here.

``LIGHTNING_REG_TEST_POSTGRES`` (a URL) names a running server. Otherwise :func:`start` runs ``initdb`` and
``pg_ctl`` on a free port in a temporary directory, as the ``postgres`` user when we are root (``initdb``
refuses to run as root). If neither works, the PostgreSQL tests skip with the reason, unless
``LIGHTNING_REG_REQUIRE_POSTGRES=1`` (set by CI), which turns the skip into a failure.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Server:
    url: str
    data_dir: Path | None = None
    pg_ctl: str | None = None
    as_postgres: bool = False

    def stop(self) -> None:
        if self.data_dir is None or self.pg_ctl is None:
            return
        cmd = [self.pg_ctl, "-D", str(self.data_dir), "-m", "fast", "-w", "stop"]
        subprocess.run(_as_user(cmd, self.as_postgres), capture_output=True, timeout=60)
        shutil.rmtree(self.data_dir.parent, ignore_errors=True)


def _as_user(cmd: list[str], as_postgres: bool) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if as_postgres else cmd


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    cands = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return cands[-1] if cands else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start() -> Server:
    """Return a running server, or raise ``RuntimeError`` saying why none could be had."""
    url = os.environ.get("LIGHTNING_REG_TEST_POSTGRES")
    if url:
        return Server(url)
    initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
    if not initdb or not pg_ctl:
        raise RuntimeError("PostgreSQL's initdb/pg_ctl are not installed (apt-get install postgresql)")
    as_postgres = os.geteuid() == 0
    if as_postgres and not shutil.which("runuser"):
        raise RuntimeError("running as root and `runuser` is missing, so initdb cannot run as postgres")
    base = Path(tempfile.mkdtemp(prefix="lr-pg-"))
    data = base / "data"
    if as_postgres:
        shutil.chown(base, user="postgres")
    port = free_port()
    run = lambda cmd: subprocess.run(_as_user(cmd, as_postgres), capture_output=True, text=True, timeout=120)  # noqa: E731
    res = run([initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"])
    if res.returncode != 0:
        shutil.rmtree(base, ignore_errors=True)
        raise RuntimeError(f"initdb failed: {res.stderr.strip()[-500:]}")
    opts = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100"
    res = run([pg_ctl, "-D", str(data), "-l", str(base / "server.log"), "-o", opts, "-w", "-t", "60", "start"])
    if res.returncode != 0:
        log = (base / "server.log").read_text() if (base / "server.log").exists() else ""
        shutil.rmtree(base, ignore_errors=True)
        raise RuntimeError(f"pg_ctl start failed: {res.stderr.strip()[-300:]} {log[-300:]}")
    return Server(f"postgresql://postgres@127.0.0.1:{port}/postgres", data, pg_ctl, as_postgres)
