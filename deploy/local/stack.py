"""Start, stop and inspect the whole Image Router stack on this machine.

    python deploy/local/stack.py up --profile dev      # what `make run` does
    python deploy/local/stack.py down --profile dev    # what `make stop` does

A profile fixes the ports, the database and the Redis database, so that the
`dev` stack of `make run` and the `test` stack of `make test` never collide.
Every process is a child started here with its own log file; its PID goes to
`.run/<profile>/pids/`, and `down` ends exactly those PIDs.

The test suite imports this module to start its own stack and extra replicas.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[2]
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
STARTUP_TIMEOUT_SECONDS = 90.0
STOP_TIMEOUT_SECONDS = 20.0


@dataclass(frozen=True)
class Profile:
    name: str
    nginx_port: int
    # Service ports are offsets from this base.
    port_base: int
    database_url: str
    redis_url: str
    # The services' ENVIRONMENT setting.
    environment: str = "development"
    # Generation API processes behind nginx; the test stack runs two, so that
    # every end-to-end test also checks that replicas share their state.
    generation_replicas: int = 1

    @property
    def run_dir(self) -> Path:
        return ROOT / ".run" / self.name

    @property
    def data_dir(self) -> Path:
        return ROOT / ".data" / self.name

    def port(self, offset: int) -> int:
        return self.port_base + offset


def _profiles() -> dict[str, Profile]:
    return {
        "dev": Profile(
            name="dev",
            nginx_port=int(os.environ.get("NGINX_PORT", "8080")),
            port_base=int(os.environ.get("PORT_BASE", "8100")),
            database_url=os.environ.get(
                "DATABASE_URL",
                "postgresql+asyncpg://postgres@127.0.0.1:5432/image_router",
            ),
            redis_url=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        ),
        "test": Profile(
            # A different name gives a separate run folder, so that several
            # test stacks (with their own ports) can run side by side.
            name=os.environ.get("TEST_STACK_NAME", "test"),
            nginx_port=int(os.environ.get("TEST_NGINX_PORT", "18080")),
            port_base=int(os.environ.get("TEST_PORT_BASE", "18100")),
            database_url=os.environ.get(
                "TEST_DATABASE_URL",
                "postgresql+asyncpg://postgres@127.0.0.1:5432/image_router_test",
            ),
            redis_url=os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15"),
            environment="test",
            generation_replicas=int(os.environ.get("TEST_GENERATION_REPLICAS", "2")),
        ),
    }


# Port offsets from the profile's base.
AUTH_HTTP, KEYS_HTTP, GENERATION_HTTP, PROVIDERS_HTTP = 1, 2, 3, 4
# The job worker's /metrics and /healthz listener.
WORKER_METRICS_HTTP = 5
KEYS_GRPC, PROVIDERS_GRPC = 12, 14
# Further generation replicas listen on 30, 31, ... past the base.
GENERATION_REPLICA_BASE = 29
SIMULATOR_HTTP = 99


@dataclass
class ServiceSpec:
    """One process of the stack: how to start it and how to tell it is up."""

    name: str
    command: list[str]
    cwd: Path
    env: dict[str, str]
    health_url: str | None
    ready_url: str | None = None


@dataclass
class Stack:
    profile: Profile
    # Extra settings for every service, such as shortened windows in tests.
    overrides: dict[str, str] = field(default_factory=dict)
    # Processes started by this object, kept so that they can be reaped.
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    # -- paths -------------------------------------------------------------

    @property
    def pid_dir(self) -> Path:
        return self.profile.run_dir / "pids"

    @property
    def log_dir(self) -> Path:
        return self.profile.run_dir / "logs"

    @property
    def images_dir(self) -> Path:
        return self.profile.data_dir / "images"

    @property
    def public_base_url(self) -> str:
        return f"http://127.0.0.1:{self.profile.nginx_port}"

    @property
    def simulator_url(self) -> str:
        return f"http://127.0.0.1:{self.profile.port(SIMULATOR_HTTP)}"

    # -- settings ----------------------------------------------------------

    def secrets(self) -> dict[str, str]:
        """Development secrets, made once per profile and kept across restarts.

        Values from the environment win, so a deployment can set its own.
        """
        path = self.profile.data_dir / "secrets.json"
        stored: dict[str, str] = {}
        if path.exists():
            stored = json.loads(path.read_text())
        if not stored:
            from cryptography.fernet import Fernet

            stored = {
                "JWT_SECRET": secrets.token_urlsafe(48),
                "INTERNAL_SERVICE_TOKEN": secrets.token_urlsafe(32),
                "API_KEY_PEPPER": secrets.token_urlsafe(32),
                "PROVIDER_SECRET_KEYS": Fernet.generate_key().decode(),
                "ADMIN_PASSWORD": secrets.token_urlsafe(18),
            }
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(stored, indent=2))
            path.chmod(0o600)
        return {name: os.environ.get(name, value) for name, value in stored.items()}

    def common_env(self) -> dict[str, str]:
        profile = self.profile
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "ENVIRONMENT": profile.environment,
            "LOG_LEVEL": os.environ.get("LOG_LEVEL", "INFO"),
            "DATABASE_URL": profile.database_url,
            "REDIS_URL": profile.redis_url,
            "ADMIN_EMAIL": os.environ.get("ADMIN_EMAIL", "admin@example.com"),
            "PYTHONUNBUFFERED": "1",
        }
        env.update(self.secrets())
        env.update(self.overrides)
        return env

    def service_specs(self) -> list[ServiceSpec]:
        profile = self.profile
        python = str(VENV_PYTHON)
        env = self.common_env()
        keys_grpc = f"127.0.0.1:{profile.port(KEYS_GRPC)}"
        providers_grpc = f"127.0.0.1:{profile.port(PROVIDERS_GRPC)}"
        simulator_host = f"127.0.0.1:{profile.port(SIMULATOR_HTTP)}"
        worker_metrics_port = profile.port(WORKER_METRICS_HTTP)

        def service(name: str, port: int, extra: dict[str, str]) -> ServiceSpec:
            return ServiceSpec(
                name=name,
                command=[python, "-m", f"{name}_service", "serve"],
                cwd=ROOT / "services" / name,
                # Overrides win over the defaults chosen here.
                env={**env, "HTTP_PORT": str(port), **extra, **self.overrides},
                health_url=f"http://127.0.0.1:{port}/healthz",
                ready_url=f"http://127.0.0.1:{port}/readyz",
            )

        generation = service(
            "generation",
            profile.port(GENERATION_HTTP),
            {
                "KEYS_GRPC_ADDR": keys_grpc,
                "PROVIDERS_GRPC_ADDR": providers_grpc,
                "IMAGES_DIR": str(self.images_dir),
                "PUBLIC_BASE_URL": self.public_base_url,
                "PROVIDER_URL_ALLOWLIST": os.environ.get(
                    "PROVIDER_URL_ALLOWLIST", simulator_host
                ),
            },
        )
        return [
            service(
                "providers",
                profile.port(PROVIDERS_HTTP),
                {
                    "GRPC_PORT": str(profile.port(PROVIDERS_GRPC)),
                    "PROVIDER_URL_ALLOWLIST": os.environ.get(
                        "PROVIDER_URL_ALLOWLIST", simulator_host
                    ),
                },
            ),
            service(
                "keys",
                profile.port(KEYS_HTTP),
                {"GRPC_PORT": str(profile.port(KEYS_GRPC))},
            ),
            service("auth", profile.port(AUTH_HTTP), {}),
            generation,
            *self._generation_replicas(generation),
            ServiceSpec(
                name="worker",
                command=[python, "-m", "generation_service", "worker"],
                cwd=ROOT / "services" / "generation",
                env={
                    **generation.env,
                    "WORKER_METRICS_PORT": str(worker_metrics_port),
                    **self.overrides,
                },
                health_url=f"http://127.0.0.1:{worker_metrics_port}/healthz",
            ),
            ServiceSpec(
                name="simulator",
                command=[
                    python,
                    "-m",
                    "simulator",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(profile.port(SIMULATOR_HTTP)),
                ],
                cwd=ROOT / "simulator",
                env={**env},
                health_url=f"{self.simulator_url}/healthz",
            ),
            self.nginx_spec(),
        ]

    def _generation_replicas(self, first: ServiceSpec) -> list[ServiceSpec]:
        replicas = []
        for index, port in enumerate(self.generation_replica_ports()[1:], start=2):
            replicas.append(
                ServiceSpec(
                    name=f"generation-{index}",
                    command=first.command,
                    cwd=first.cwd,
                    env={**first.env, "HTTP_PORT": str(port)},
                    health_url=f"http://127.0.0.1:{port}/healthz",
                    ready_url=f"http://127.0.0.1:{port}/readyz",
                )
            )
        return replicas

    def generation_replica_ports(self) -> list[int]:
        first = self.profile.port(GENERATION_HTTP)
        extra = [
            self.profile.port(GENERATION_REPLICA_BASE + index)
            for index in range(1, self.profile.generation_replicas)
        ]
        return [first, *extra]

    def nginx_spec(self) -> ServiceSpec:
        profile = self.profile
        nginx_dir = profile.run_dir / "nginx"
        return ServiceSpec(
            name="nginx",
            command=[
                nginx_binary(),
                "-p",
                str(nginx_dir),
                "-c",
                str(nginx_dir / "nginx.conf"),
                "-e",
                str(self.log_dir / "nginx-error.log"),
                "-g",
                "daemon off;",
            ],
            cwd=ROOT,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
            health_url=f"{self.public_base_url}/nginx-health",
        )

    def render_nginx_config(self) -> None:
        profile = self.profile
        nginx_dir = profile.run_dir / "nginx"
        for sub in ("", "temp"):
            (nginx_dir / sub).mkdir(parents=True, exist_ok=True)
        values = {
            "IR_LISTEN": f"127.0.0.1:{profile.nginx_port}",
            "IR_AUTH_ADDR": f"127.0.0.1:{profile.port(AUTH_HTTP)}",
            "IR_KEYS_ADDR": f"127.0.0.1:{profile.port(KEYS_HTTP)}",
            "IR_GENERATION_ADDR": f"127.0.0.1:{profile.port(GENERATION_HTTP)}",
            "IR_PROVIDERS_ADDR": f"127.0.0.1:{profile.port(PROVIDERS_HTTP)}",
            "IR_IMAGES_DIR": str(self.images_dir),
            # With IMAGE_STORAGE=s3 generation streams the stored images from
            # the bucket, so nginx proxies their location to it.
            "IR_IMAGES_PROXY": (
                "proxy_pass http://generation_service;"
                if self.overrides.get("IMAGE_STORAGE") == "s3"
                else ""
            ),
            "IR_RUN_DIR": str(nginx_dir),
            "IR_ACCESS_LOG": str(self.log_dir / "nginx-access.log"),
            "IR_USER": "nobody nogroup" if os.geteuid() == 0 else "",
            # The coarse per-address guard; the test suite lifts it, because all
            # its traffic comes from 127.0.0.1.
            "IR_RATE_PER_SECOND": os.environ.get("NGINX_RATE_PER_SECOND", "50"),
            "IR_RATE_BURST": os.environ.get("NGINX_RATE_BURST", "100"),
            "IR_BODY_LIMIT": os.environ.get("NGINX_BODY_LIMIT", "256k"),
            **{k: v for k, v in self.overrides.items() if k.startswith("IR_")},
        }
        values["IR_GENERATION_EXTRA_SERVERS"] = "".join(
            f"        server 127.0.0.1:{port} max_fails=0;\n"
            for port in self.generation_replica_ports()[1:]
        )
        text = (ROOT / "nginx" / "nginx.conf.template").read_text()
        for name, value in values.items():
            text = text.replace("${" + name + "}", value)
        if os.geteuid() != 0:
            text = text.replace("user ;\n", "")
        (nginx_dir / "nginx.conf").write_text(text)

    # -- processes ---------------------------------------------------------

    def pid_file(self, name: str) -> Path:
        return self.pid_dir / f"{name}.pid"

    def running_pid(self, name: str) -> int | None:
        process = self.processes.get(name)
        if process is not None:
            # Started by this object: its own handle is reliable, even in the instant
            # between fork and exec when the child does not carry the marker yet.
            return process.pid if process.poll() is None else None
        path = self.pid_file(name)
        if not path.exists():
            return None
        pid = int(path.read_text().strip() or 0)
        if pid and _is_alive(pid) and _started_here(pid):
            return pid
        return None

    def start(self, spec: ServiceSpec) -> int:
        """Start one process in its own session, logging to `logs/<name>.log`."""
        if (pid := self.running_pid(spec.name)) is not None:
            return pid
        self.pid_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_file = open(self.log_dir / f"{spec.name}.log", "wb")  # noqa: SIM115
        process = subprocess.Popen(
            spec.command,
            cwd=spec.cwd,
            env={**spec.env, "IMAGE_ROUTER_STACK": str(ROOT)},
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log_file.close()
        self.processes[spec.name] = process
        self.pid_file(spec.name).write_text(str(process.pid))
        return process.pid

    def wait_healthy(
        self, spec: ServiceSpec, timeout: float = STARTUP_TIMEOUT_SECONDS
    ) -> None:
        deadline = time.monotonic() + timeout
        for url in filter(None, (spec.health_url, spec.ready_url)):
            while True:
                if self.running_pid(spec.name) is None:
                    raise RuntimeError(
                        f"{spec.name} exited during start-up; last lines of its log:\n"
                        + self.log_tail(spec.name)
                    )
                if _http_ok(url):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{spec.name} is not healthy at {url} after {timeout:.0f} s; "
                        "last lines of its log:\n" + self.log_tail(spec.name)
                    )
                time.sleep(0.2)

    def stop(self, name: str) -> None:
        pid = self.running_pid(name)
        self.pid_file(name).unlink(missing_ok=True)
        if pid is not None:
            _terminate(pid)
        process = self.processes.pop(name, None)
        if process is not None:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.log_dir / f"{name}.log"
        if not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    # -- whole stack -------------------------------------------------------

    def up(self) -> None:
        ensure_database(self.profile.database_url)
        self.images_dir.mkdir(parents=True, exist_ok=True)
        self.images_dir.chmod(0o755)
        self.render_nginx_config()
        # Migrations take a lock per schema, so services can start together;
        # providers and keys come first because generation's readiness needs them.
        specs = self.service_specs()
        for spec in specs:
            self.start(spec)
        for spec in specs:
            self.wait_healthy(spec)

    def down(self) -> None:
        if not self.pid_dir.exists():
            return
        for path in sorted(self.pid_dir.glob("*.pid")):
            self.stop(path.stem)

    def status(self) -> dict[str, int | None]:
        if not self.pid_dir.exists():
            return {}
        return {
            path.stem: self.running_pid(path.stem)
            for path in self.pid_dir.glob("*.pid")
        }


# -- helpers -------------------------------------------------------------------


def nginx_binary() -> str:
    found = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if found is None:
        raise RuntimeError(
            "nginx is not installed; run `make install` (installs Debian's nginx)"
        )
    return found


def _is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child has exited but not been reaped yet.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _started_here(pid: int) -> bool:
    """Tell whether `pid` is a process this tool started (not a reused PID).

    Python services carry a marker in their environment; nginx rewrites that
    memory with its process title, which still names this checkout's run folder.
    """
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        command_line = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    marker = f"IMAGE_ROUTER_STACK={ROOT}".encode()
    return marker in environ.split(b"\0") or str(ROOT / ".run").encode() in command_line


def _terminate(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        _reap(pid)
        if not _is_alive(pid):
            return
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    _reap(pid)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def ensure_database(database_url: str, *, recreate: bool = False) -> None:
    """Create the stack's database when it is missing (or anew, for tests)."""
    import asyncio

    import asyncpg

    parts = urlsplit(database_url.replace("postgresql+asyncpg://", "postgresql://"))
    database = parts.path.lstrip("/")
    admin_url = urlunsplit(parts._replace(path="/postgres"))

    async def run() -> None:
        connection = await asyncpg.connect(admin_url)
        try:
            if recreate:
                await connection.execute(
                    f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'
                )
            exists = await connection.fetchval(
                "SELECT 1 FROM pg_database WHERE datname = $1", database
            )
            if not exists:
                await connection.execute(f'CREATE DATABASE "{database}"')
        finally:
            await connection.close()

    asyncio.run(run())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "down", "status", "migrate"])
    parser.add_argument("--profile", choices=sorted(_profiles()), default="dev")
    args = parser.parse_args()
    stack = Stack(_profiles()[args.profile])

    if args.command == "up":
        try:
            stack.up()
        except RuntimeError as error:
            print(f"Start-up failed: {error}", file=sys.stderr)
            stack.down()
            return 1
        from demo import print_welcome, register_demo_providers

        if args.profile == "dev":
            register_demo_providers(stack)
            print_welcome(stack)
        return 0
    if args.command == "down":
        stack.down()
        print(f"Stopped the {args.profile} stack.")
        return 0
    if args.command == "migrate":
        ensure_database(stack.profile.database_url)
        env = stack.common_env()
        for name in ("auth", "keys", "providers", "generation"):
            subprocess.run(
                [str(VENV_PYTHON), "-m", f"{name}_service", "migrate"],
                cwd=ROOT / "services" / name,
                env=env,
                check=True,
            )
        return 0
    for name, pid in sorted(stack.status().items()):
        print(f"{name:12} {'running, pid ' + str(pid) if pid else 'stopped'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
