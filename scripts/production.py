"""`make serve-production`: chatsite's production profile on one machine.

PostgreSQL, Redis and nginx from Debian's packages; N daphne workers (default: one per
core) behind nginx; DJANGO_DEBUG=0, collectstatic, `check --deploy` with the https
switches on. Every piece runs from the files in deploy/, which are also how a real server
is set up: each worker with the ExecStart and environment of
deploy/systemd/chatsite-worker@.service (restarted when it exits, as `Restart=always`
does), the purge with chatsite-purge.service's, nginx with deploy/nginx/chatsite.conf.
Only the paths change: /srv/chatsite becomes this checkout, /etc/chatsite/chatsite.env the
state directory's env file, and the site is served over plain http on loopback (so the
three https switches are off while serving).

State (database, secrets, logs) lives in --state (default .production/), kept between
runs. Ctrl-C (or SIGTERM) stops everything. A line `READY {json}` on stdout says where
everything is (the tests read it); the workers' pids are kept in STATE/workers.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pwd
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
SERVER_ROOT = "/srv/chatsite"
SERVER_ENV = "/etc/chatsite/chatsite.env"


def log(text: str) -> None:
    print(f"[production] {text}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(
    port: int, what: str, process: subprocess.Popen[bytes] | None, timeout: float = 30
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if process is not None and process.poll() is not None:
                raise SystemExit(f"{what} exited with {process.returncode}") from None
            if time.monotonic() > deadline:
                raise SystemExit(f"{what} did not listen on {port}") from None
            time.sleep(0.05)


# --- the unit files -----------------------------------------------------------------------


def unit(name: str) -> dict[str, list[str]]:
    """The [Service] settings of a unit in deploy/systemd (repeated keys kept in order)."""
    settings: dict[str, list[str]] = {}
    section = ""
    for raw in (DEPLOY / "systemd" / name).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line
            continue
        if section == "[Service]" and "=" in line:
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def read_env_file(path: Path) -> dict[str, str]:
    env = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip().strip('"')
    return env


class Profile:
    def __init__(self, state: Path, workers: int, port: int, *, ephemeral: bool = False) -> None:
        self.state = state
        self.ephemeral = ephemeral  # remove the state and the database when stopped
        self.workers = workers
        self.port = port
        self.env_file = state / "chatsite.env"
        self.logs = state / "logs"
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.worker_ports: list[int] = []
        self.stopping = False

    def local(self, text: str) -> str:
        return text.replace(SERVER_ENV, str(self.env_file)).replace(SERVER_ROOT, str(ROOT))

    def unit_process(self, name: str, instance: str = "") -> tuple[list[str], dict[str, str], Path]:
        """A unit's command, environment and directory, as systemd would run them here."""
        service = unit(name)
        command = shlex.split(self.local(service["ExecStart"][0]).replace("%i", instance))
        env = dict(os.environ)
        for path in service.get("EnvironmentFile", []):
            env.update(read_env_file(Path(self.local(path))))
        for assignment in service.get("Environment", []):
            key, _, value = assignment.partition("=")
            env[key] = value
        cwd = Path(self.local(service.get("WorkingDirectory", [SERVER_ROOT])[0]))
        return command, env, cwd

    # --- PostgreSQL and Redis -------------------------------------------------------------

    def postgres(self) -> str:
        subprocess.run(
            [
                "bash",
                str(ROOT / "scripts/ensure-debian-packages.sh"),
                "pg_ctlcluster",
                "postgresql",
            ],
            check=True,
        )
        binaries = sorted(
            Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name)
        )
        pgbin = binaries[-1]
        data = self.state / "postgres"
        as_postgres: list[str] = []
        if os.getuid() == 0:
            # PostgreSQL refuses to run as root: its cluster is the postgres user's, kept
            # where that user can reach it whatever the state directory's parents allow.
            as_postgres = ["runuser", "-u", "postgres", "--"]
            tag = hashlib.sha256(str(self.state).encode()).hexdigest()[:12]
            data = Path("/var/lib/postgresql") / f"chatsite-production-{tag}"
        password_file = self.state / "postgres.password"
        if not password_file.exists():
            password_file.write_text(secrets.token_urlsafe(24))
            password_file.chmod(0o600)
        password = password_file.read_text().strip()
        if not (data / "PG_VERSION").exists():
            data.mkdir(parents=True, exist_ok=True)
            data.chmod(0o700)
            descriptor, name = tempfile.mkstemp(prefix="chatsite-pw-")
            pwfile = Path(name)
            os.write(descriptor, (password + "\n").encode())
            os.close(descriptor)
            if os.getuid() == 0:
                shutil.chown(data, "postgres")
                shutil.chown(pwfile, "postgres")
            subprocess.run(
                [*as_postgres, str(pgbin / "initdb"), "-D", str(data), "-U", "chatsite",
                 "--auth=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8", "--locale=C.UTF-8"],
                check=True, stdout=subprocess.DEVNULL,
            )  # fmt: skip
            pwfile.unlink()
        port = free_port()
        self.pg = (as_postgres, pgbin, data)
        subprocess.run(
            [*as_postgres, str(pgbin / "pg_ctl"), "-D", str(data), "-l", str(data / "server.log"),
             "-w", "-o", f"-p {port} -k {data} -c listen_addresses=127.0.0.1", "start"],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        url = f"postgres://chatsite:{password}@127.0.0.1:{port}/chatsite"
        exists = subprocess.run(
            [str(pgbin / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "chatsite", "-d",
             "postgres", "-tAc", "SELECT 1 FROM pg_database WHERE datname = 'chatsite'"],
            env={**os.environ, "PGPASSWORD": password}, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        if exists != "1":
            subprocess.run(
                [str(pgbin / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "chatsite",
                 "chatsite"],
                env={**os.environ, "PGPASSWORD": password}, check=True,
            )  # fmt: skip
        log(f"PostgreSQL on 127.0.0.1:{port}")
        return url

    def redis(self) -> str:
        subprocess.run(
            [
                "bash",
                str(ROOT / "scripts/ensure-debian-packages.sh"),
                "redis-server",
                "redis-server",
            ],
            check=True,
        )
        port = free_port()
        password = secrets.token_urlsafe(24)
        process = subprocess.Popen(
            [shutil.which("redis-server") or "/usr/bin/redis-server", "--port", str(port),
             "--bind", "127.0.0.1", "--requirepass", password, "--save", "", "--appendonly",
             "no", "--dir", str(self.state)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.processes["redis"] = process
        wait_port(port, "redis-server", process)
        log(f"Redis on 127.0.0.1:{port}")
        return f"redis://:{password}@127.0.0.1:{port}/0"

    # --- the site -------------------------------------------------------------------------

    def write_env(self, database_url: str, redis_url: str) -> None:
        key_file = self.state / "secret_key"
        if not key_file.exists():
            key_file.write_text(secrets.token_urlsafe(50))
            key_file.chmod(0o600)
        env = {
            "DJANGO_DEBUG": "0",
            "DJANGO_SECRET_KEY": key_file.read_text().strip(),
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "DJANGO_STATIC_ROOT": str(self.state / "staticfiles"),
            # The units' StateDirectory on a real server (/var/lib/chatsite/attachments).
            "CHATSITE_ATTACHMENTS_ROOT": str(self.state / "attachments"),
            # Plain http on loopback here; a real server keeps all three on (TLS at nginx).
            "DJANGO_SECURE_SSL_REDIRECT": "0",
            "DJANGO_SECURE_COOKIES": "0",
            "DJANGO_SECURE_HSTS_SECONDS": "0",
        }
        # The model service and chatsite's own settings come from the caller.
        for key, value in os.environ.items():
            if key.startswith(("OPENAI_", "CHATSITE_")):
                env[key] = value
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
        self.env_file.chmod(0o600)

    def manage(self, *args: str, env: dict[str, str] | None = None) -> None:
        command, unit_env, cwd = self.unit_process("chatsite-purge.service")
        python = command[0]  # the units' interpreter
        subprocess.run(
            [python, "manage.py", *args], cwd=cwd, env={**unit_env, **(env or {})}, check=True
        )

    def prepare(self) -> None:
        self.manage("migrate", "--noinput", "-v0")
        self.manage("collectstatic", "--noinput", "-v0")
        # What a real server runs with: https on. Any warning fails the start.
        self.manage(
            "check", "--deploy", "--fail-level", "WARNING",
            env={"DJANGO_SECURE_SSL_REDIRECT": "1", "DJANGO_SECURE_COOKIES": "1",
                 "DJANGO_SECURE_HSTS_SECONDS": "31536000"},
        )  # fmt: skip
        command, env, cwd = self.unit_process("chatsite-purge.service")
        subprocess.run(command, cwd=cwd, env=env, check=True)

    def start_worker(self, port: int) -> None:
        command, env, cwd = self.unit_process("chatsite-worker@.service", str(port))
        with open(self.logs / f"worker-{port}.log", "ab") as out:
            process = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=out)
        self.processes[f"worker-{port}"] = process
        wait_port(port, f"worker {port}", process)
        self.write_pids()

    def write_pids(self) -> None:
        pids = {
            str(p): self.processes[f"worker-{p}"].pid
            for p in self.worker_ports
            if f"worker-{p}" in self.processes
        }
        (self.state / "workers.json").write_text(json.dumps(pids))

    def nginx(self) -> None:
        subprocess.run(
            ["bash", str(ROOT / "scripts/ensure-debian-packages.sh"), "nginx", "nginx"], check=True
        )
        site = self.local((DEPLOY / "nginx" / "chatsite.conf").read_text())
        site = site.replace(str(ROOT) + "/staticfiles/", str(self.state / "staticfiles") + "/")
        servers = "".join(
            f"    server 127.0.0.1:{port} max_fails=1 fail_timeout=3s;\n"
            for port in self.worker_ports
        )
        site, count = re.subn(
            r"(?m)^    server 127\.0\.0\.1:\d+ [^\n]*\n(?:    server [^\n]*\n)*", servers, site
        )
        assert count == 1, "deploy/nginx/chatsite.conf: the upstream's server lines moved"
        site = re.sub(r"(?m)^    listen \[::\]:80;\n", "", site)
        site = re.sub(r"(?m)^    listen 80;", f"    listen 127.0.0.1:{self.port};", site)
        site = site.replace("server_name chat.example.org;", "server_name 127.0.0.1 localhost;")
        conf = self.state / "nginx"
        conf.mkdir(exist_ok=True)
        (conf / "chatsite.conf").write_text(site)
        user = ""
        if os.getuid() == 0:  # nginx's workers read the static files as the checkout's owner
            user = f"user {pwd.getpwuid(ROOT.stat().st_uid).pw_name};\n"
        temp = conf / "temp"
        temp.mkdir(exist_ok=True)
        (conf / "nginx.conf").write_text(
            f"{user}worker_processes 1;\ndaemon off;\npid {conf}/nginx.pid;\n"
            f"error_log {self.logs}/nginx-error.log warn;\nevents {{ worker_connections 4096; }}\n"
            "http {\n    include /etc/nginx/mime.types;\n"
            "    default_type application/octet-stream;\n"
            f"    access_log {self.logs}/nginx-access.log;\n"
            f"    client_body_temp_path {temp}/body;\n    proxy_temp_path {temp}/proxy;\n"
            f"    fastcgi_temp_path {temp}/fastcgi;\n    uwsgi_temp_path {temp}/uwsgi;\n"
            f"    scgi_temp_path {temp}/scgi;\n    include {conf}/chatsite.conf;\n}}\n"
        )
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        subprocess.run([nginx, "-t", "-q", "-c", str(conf / "nginx.conf")], check=True)
        process = subprocess.Popen([nginx, "-c", str(conf / "nginx.conf")])
        self.processes["nginx"] = process
        wait_port(self.port, "nginx", process)

    # --- life -----------------------------------------------------------------------------

    def run(self) -> None:
        self.state.mkdir(parents=True, exist_ok=True)
        self.state.chmod(0o755)  # PostgreSQL (its own user) and nginx's workers look inside
        self.logs.mkdir(exist_ok=True)
        database_url = self.postgres()
        redis_url = self.redis()
        self.write_env(database_url, redis_url)
        self.prepare()
        self.worker_ports = [free_port() for _ in range(self.workers)]
        for port in self.worker_ports:
            self.start_worker(port)
        self.nginx()
        url = f"http://127.0.0.1:{self.port}/"
        self.ready(url)
        ready: dict[str, Any] = {
            "url": url,
            "workers": self.worker_ports,
            "state": str(self.state),
            "env_file": str(self.env_file),  # the secrets stay in it (mode 0600)
        }
        print("READY " + json.dumps(ready), flush=True)
        log(f"chatsite on {url} ({self.workers} workers); Ctrl-C stops it")
        self.supervise()

    def ready(self, url: str) -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                # The URL is ours: http on loopback.
                page = url + "accounts/login/"
                with urllib.request.urlopen(page, timeout=5) as response:  # noqa: S310
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"{url} does not answer")
            time.sleep(0.1)

    def supervise(self) -> None:
        # Restart=always, RestartSec=1: a worker that exits (killed, or stopped for a
        # rolling restart) is started again a second later.
        while not self.stopping:
            for port in self.worker_ports:
                process = self.processes[f"worker-{port}"]
                if process.poll() is not None and not self.stopping:
                    log(f"worker {port} exited ({process.returncode}); starting it again")
                    time.sleep(1)
                    self.start_worker(port)
            for name in ("nginx", "redis"):
                if self.processes[name].poll() is not None and not self.stopping:
                    raise SystemExit(f"{name} exited")
            time.sleep(0.2)

    def stop(self) -> None:
        self.stopping = True
        for name, process in self.processes.items():
            if process.poll() is None:
                process.send_signal(signal.SIGQUIT if name == "nginx" else signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        if hasattr(self, "pg"):
            as_postgres, pgbin, data = self.pg
            subprocess.run(
                [*as_postgres, str(pgbin / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False,
            )  # fmt: skip
            if self.ephemeral:
                shutil.rmtree(data, ignore_errors=True)
        if self.ephemeral:
            shutil.rmtree(self.state, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state", default=str(ROOT / ".production"))
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument(
        "--ephemeral", action="store_true", help="remove the state and database when stopped"
    )
    args = parser.parse_args()
    profile = Profile(
        Path(args.state).resolve(), max(1, args.workers), args.port, ephemeral=args.ephemeral
    )

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        profile.run()
    except KeyboardInterrupt:
        pass
    finally:
        profile.stop()
        log("stopped")


if __name__ == "__main__":
    main()
