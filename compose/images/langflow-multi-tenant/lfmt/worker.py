"""One tenant's worker: one Langflow app (uvicorn, langflow.main:setup_app) served under
/tenant/<prefix> on 127.0.0.1:<port>, connected as the tenant's own database role, with the
tenant's own secret key, config dir and S3 prefix. Started (and restarted when it crashes) by
supervisord; the router sends /tenant/<prefix>/ here.

    worker.py <schema_id> <port>

With LFMT_START=fork (the default) the app is forked from the container's fork server, which
imported Langflow once (forkserver.py, the harness's `langflow_forkserver.py`): this process asks
for it, then stands for it towards supervisord: it exits when the worker dies (supervisord then
restarts it, which forks again), and a stop signal stops the worker's process group. Where the
fork server refuses (it could not prove the fork safe), or does not answer within
LFMT_FORK_WAIT seconds (default 180), the app runs in this process instead, as with
LFMT_START=spawn.

The seed and the master database password never reach Langflow: the worker derives the tenant's
secrets, removes them from its environment and makes itself non-dumpable (its memory and
/proc/<pid>/environ unreadable to the other tenants' processes, which run as the same uid).
"""
import os
import sys
from urllib.parse import quote

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

common.not_dumpable()

# Passed through from the TaskDefinition to Langflow unchanged.
PASS_THROUGH_PREFIXES = ("AWS_",)
PASS_THROUGH = (
    "LANGFLOW_STORAGE_TYPE",
    "LANGFLOW_OBJECT_STORAGE_BUCKET_NAME",
    "LANGFLOW_OBJECT_STORAGE_TAGS",
    "LANGFLOW_RATE_LIMIT_TRUST_PROXY",
    "LANGFLOW_RATE_LIMIT_PER_MINUTE",
    "LANGFLOW_COMPONENTS_PATH",
    "LANGFLOW_LOG_LEVEL",
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "TZ",
)


def tenant_env(schema, port):
    prefix = common.SCHEMA_RE.match(schema).group(1)
    fault = common.fault()
    key_for = schema
    role, password = schema, common.db_password(schema)
    if fault == "shared-secret-key":
        first = first_tenant()
        key_for = first or schema
    elif fault == "shared-database-role":
        first = first_tenant() or schema
        role, password = first, common.db_password(first)
    elif fault == "public-schema":
        role, password = common.env("DB_USER"), common.env("DB_PASSWORD")
    url = "postgresql://{}:{}@{}:{}/{}".format(
        quote(role, safe=""),
        quote(password, safe=""),
        common.env("DB_HOST"),
        common.env("DB_PORT"),
        quote(common.env("DB_NAME"), safe=""),
    )
    home = os.path.join(common.STATE_DIR, "tenants", schema)
    dirs = {sub: os.path.join(home, sub) for sub in ("config", "knowledge_bases", "telemetry", "tmp")}
    for path in dirs.values():
        os.makedirs(path, mode=0o700, exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/app/.venv/bin:/usr/bin:/bin"),
        "VIRTUAL_ENV": os.environ.get("VIRTUAL_ENV", "/app/.venv"),
        "PYTHONUNBUFFERED": "1",
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "HOME": home,
        "TMPDIR": dirs["tmp"],
        "LANGFLOW_DATABASE_URL": url,
        "LANGFLOW_CONFIG_DIR": dirs["config"],
        "LANGFLOW_KNOWLEDGE_BASES_DIR": dirs["knowledge_bases"],
        "LANGFLOW_TELEMETRY_WRITER_OUTBOX_DIR": dirs["telemetry"],
        "LANGFLOW_HOST": "127.0.0.1",
        "LANGFLOW_PORT": str(port),
        "LANGFLOW_ROOT_PATH": f"/tenant/{prefix}",
        "LANGFLOW_SECRET_KEY": common.secret_key(key_for),
        "LANGFLOW_AUTO_LOGIN": "false",
        "LANGFLOW_SUPERUSER": common.OPERATOR_USERNAME,
        "LANGFLOW_SUPERUSER_PASSWORD": common.operator_password(schema),
        "LANGFLOW_ENABLE_SIGNUP": "false",
        "LANGFLOW_DO_NOT_TRACK": "true",
        "LANGFLOW_MODELS_DEV_REFRESH": "false",
        "LANGFLOW_STORE": "false",
        "LANGFLOW_CHECK_VERSION": "false",
        # Tenant files go to the shared bucket under the tenant's own prefix.
        "LANGFLOW_OBJECT_STORAGE_PREFIX": f"tenants/{schema}",
        # A build's events come back in its own response: Langflow's job queue is per process,
        # so a follow-up GET /api/v1/build/<job>/events that the load balancer (or this task's
        # router) sends to another task or worker would answer 404 "Job not found".
        "LANGFLOW_EVENT_DELIVERY": common.env("LANGFLOW_EVENT_DELIVERY", "direct"),
    }
    for name, value in os.environ.items():
        if name in PASS_THROUGH or name.startswith(PASS_THROUGH_PREFIXES):
            env[name] = value
    if "AWS_ROLE_ARN" in env and "AWS_ROLE_SESSION_NAME" not in env:
        env["AWS_ROLE_SESSION_NAME"] = f"langflow-{prefix}"
    env.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    return env


def first_tenant():
    """The first registered tenant's schema (for the shared-* faults)."""
    with common.connect() as conn:
        rows = common.registry(conn)
    return rows[0][1] if rows else None


FORK_SOCKET = os.path.join(common.RUN_DIR, "fork.sock")


def fork_call(header, body=None, timeout=30):
    """One request to the fork server: a header line (`ping`, `fork <name>`), for a fork the
    JSON line the forked child reads itself; returns the JSON answer."""
    import json
    import socket

    request = header.encode() + b"\n"
    if body is not None:
        request += json.dumps(body).encode() + b"\n"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        conn.connect(FORK_SOCKET)
        conn.sendall(request)
        data = b""
        while not data.endswith(b"\n"):
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
    return json.loads(data)


def run_forked(schema, env):
    """Asks the fork server for the tenant's app and stands for it; False when it must be spawned."""
    import select
    import signal
    import time

    deadline = time.monotonic() + float(os.environ.get("LFMT_FORK_WAIT", "180"))
    while True:
        try:
            if fork_call("ping", timeout=5).get("ok"):
                break
        except (OSError, ValueError):
            pass
        if time.monotonic() > deadline:
            print(f"lfmt: worker {schema}: the fork server did not answer; starting as its own process", flush=True)
            return False
        time.sleep(0.5)
    # One name per worker: the fork server replaces a live worker of the same name, and a
    # tenant has LANGFLOW_WORKERS of them (one per port).
    reply = fork_call(f"fork {schema}:{env['LANGFLOW_PORT']}", {
        "env": env,
        "cwd": env["HOME"],
        "log": None,
        "host": "127.0.0.1",
        "port": int(env["LANGFLOW_PORT"]),
        "dumpable": False,
        "uvicorn": {"proxy_headers": True, "forwarded_allow_ips": "127.0.0.1"},
    })
    if not reply.get("ok"):
        print(f"lfmt: worker {schema}: {reply.get('error')}; starting as its own process", flush=True)
        return False
    pid = reply["pid"]
    print(f"lfmt: worker {schema}: forked as pid {pid}", flush=True)

    def stop(signum, _frame):
        try:
            os.killpg(pid, signum)
        except OSError:
            pass

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, stop)
    # The worker is the fork server's child: watch it through a pidfd (it may be reused only
    # once the server has reaped it, which the pidfd notices first).
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        sys.exit(1)
    while True:
        try:
            ready, _, _ = select.select([pidfd], [], [])
        except InterruptedError:
            continue
        if ready:
            break
    print(f"lfmt: worker {schema}: pid {pid} stopped", flush=True)
    sys.exit(1)


def main():
    if len(sys.argv) != 3 or not common.SCHEMA_RE.match(sys.argv[1]) or not sys.argv[2].isdigit():
        common.die("usage: worker.py <schema_id> <port>")
    schema, port = sys.argv[1], int(sys.argv[2])
    try:
        common.check_env()
        env = tenant_env(schema, port)
    except common.ConfigError as e:
        common.die(str(e))
    if os.environ.get("LFMT_START", "fork") == "fork":
        # Same as the fork server's environment (see entrypoint.py), so the import's reads match.
        env.update({"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "PATH": "/app/.venv/bin:/usr/bin:/bin", "LANG": "C.UTF-8"})
        run_forked(schema, env)
    # Only the tenant's own settings remain: no seed, no master password.
    os.environ.clear()
    os.environ.update(env)
    os.chdir(env["HOME"])
    import uvicorn

    uvicorn.run(
        "langflow.main:setup_app",
        factory=True,
        host="127.0.0.1",
        port=port,
        access_log=False,
        proxy_headers=True,
        forwarded_allow_ips="127.0.0.1",
    )


if __name__ == "__main__":
    main()
