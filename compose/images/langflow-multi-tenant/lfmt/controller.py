"""The registry poller of one task: every ~2 s it reads public.tenant_registry and makes this
container serve exactly the registered tenants: LANGFLOW_WORKERS supervisord programs per tenant
(its workers, one port each), and the nginx router's locations (/tenant/<prefix>/ -> those
workers, round-robin). A tenant added with `tenantmgr.py schema-add` through any task is served by
every task without a restart.

Runs under supervisord (restarted if it dies). It writes only configuration without secrets;
workers derive their own secrets from the seed in their environment.
"""
import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

common.not_dumpable()

POLL_SECONDS = float(os.environ.get("LFMT_POLL_SECONDS", "2"))
FIRST_WORKER_PORT = 20000
PROGRAMS_DIR = os.path.join(common.RUN_DIR, "tenants")
NGINX_CONF = os.path.join(common.RUN_DIR, "nginx.conf")
PORTS_FILE = os.path.join(common.RUN_DIR, "ports.json")
SUPERVISOR_CONF = os.path.join(common.RUN_DIR, "supervisord.conf")
PYTHON = "/app/.venv/bin/python"
WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "worker.py")


def log(message):
    print(f"lfmt-controller: {message}", file=sys.stderr, flush=True)


def nginx_conf(tenants, ports, health):
    """The router's configuration. `health` is None before the first poll (503), else the
    registry's state: "ok", or the reason the last poll failed (then /health_check is 503)."""
    listen_host = common.env("LANGFLOW_HOST", "0.0.0.0")
    listen_port = common.env("LANGFLOW_PORT", "7860")
    run = common.RUN_DIR
    lines = [
        "worker_processes 1;",
        f"pid {run}/nginx.pid;",
        "error_log /dev/stderr warn;",
        "events { worker_connections 4096; }",
        "http {",
        "  default_type application/octet-stream;",
        # The access log never carries query strings (tokens travel there).
        "  log_format lfmt '$remote_addr \"$request_method $uri\" $status $body_bytes_sent $request_time';",
        "  access_log /dev/stdout lfmt;",
        f"  client_body_temp_path {run}/nginx/body;",
        f"  proxy_temp_path {run}/nginx/proxy;",
        f"  fastcgi_temp_path {run}/nginx/fastcgi;",
        f"  uwsgi_temp_path {run}/nginx/uwsgi;",
        f"  scgi_temp_path {run}/nginx/scgi;",
        "  client_max_body_size 1024m;",
        "  server_tokens off;",
        # Websocket upgrades pass through; other requests keep the upstream connection alive.
        "  map $http_upgrade $connection_upgrade { default upgrade; '' ''; }",
    ]
    for prefix, schema in tenants:
        servers = " ".join(f"server 127.0.0.1:{port};" for port in ports[schema])
        lines.append(f"  upstream {upstream_name(schema)} {{ {servers} keepalive 16; }}")
    lines += [
        "  server {",
        f"    listen {listen_host}:{listen_port} default_server;",
    ]
    if health is None:
        body = {"status": "starting", "registry": "not polled yet"}
        lines += [
            f"    location = /health {{ default_type application/json; return 503 '{json.dumps(body)}'; }}",
            f"    location = /health_check {{ default_type application/json; return 503 '{json.dumps(body)}'; }}",
        ]
    else:
        ok = {"status": "ok", "router": "ok", "registry": "ok", "tenants": len(tenants)}
        lines.append(f"    location = /health {{ default_type application/json; return 200 '{json.dumps(ok)}'; }}")
        if health == "ok":
            lines.append(f"    location = /health_check {{ default_type application/json; return 200 '{json.dumps(ok)}'; }}")
        else:
            bad = {"status": "error", "router": "ok", "registry": health.replace("'", "")[:200], "tenants": len(tenants)}
            lines.append(f"    location = /health_check {{ default_type application/json; return 503 '{json.dumps(bad)}'; }}")
    for prefix, schema in tenants:
        upstream = upstream_name(schema)
        lines += [
            f"    location = /tenant/{prefix} {{ return 308 /tenant/{prefix}/$is_args$args; }}",
            f"    location /tenant/{prefix}/ {{",
            f"      proxy_pass http://{upstream};",
            "      proxy_http_version 1.1;",
            "      proxy_set_header Host $http_host;",
            "      proxy_set_header Upgrade $http_upgrade;",
            "      proxy_set_header Connection $connection_upgrade;",
            "      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
            "      proxy_set_header X-Forwarded-Proto $http_x_forwarded_proto;",
            "      proxy_set_header X-Forwarded-Host $http_x_forwarded_host;",
            "      proxy_buffering off;",
            "      proxy_request_buffering off;",
            "      proxy_read_timeout 3600s;",
            "      proxy_send_timeout 3600s;",
            "    }",
        ]
    body = {"detail": "Not Found: no tenant at this path; tenants are served at /tenant/<prefix>/"}
    lines += [
        f"    location / {{ default_type application/json; return 404 '{json.dumps(body)}'; }}",
        "  }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def upstream_name(schema):
    return f"tenant_{schema}"


def program_conf(schema, ports):
    """The supervisord programs of one tenant: one per worker port (`tenant-<schema>-w<n>`)."""
    return "".join(worker_program(schema, index, port) for index, port in enumerate(ports, 1))


def worker_program(schema, index, port):
    name = f"{program_name(schema)}-w{index}"
    return "\n".join([
        f"[program:{name}]",
        f"command={PYTHON} {WORKER} {schema} {port}",
        "autostart=true",
        "autorestart=true",
        # Considered started once it has run 5 s; a crash loop backs off (1 s, 2 s, ...).
        "startsecs=5",
        "startretries=1000",
        "stopsignal=TERM",
        "stopwaitsecs=15",
        "stopasgroup=true",
        "killasgroup=true",
        "redirect_stderr=true",
        "stdout_logfile=/dev/fd/1",
        "stdout_logfile_maxbytes=0",
        "",
    ])


def program_name(schema):
    return f"tenant-{schema}"


def write_atomic(path, text, mode=0o600):
    tmp = f"{path}.tmp"
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode), "w") as f:
        f.write(text)
    os.replace(tmp, path)


def load_ports():
    """{schema: [worker port, ...]} as written by the last poll of this container."""
    try:
        with open(PORTS_FILE) as f:
            return {k: [int(p) for p in v] for k, v in json.load(f).items()}
    except (OSError, ValueError, TypeError):
        return {}


def supervisorctl(*args):
    done = subprocess.run(
        ["supervisorctl", "-c", SUPERVISOR_CONF, *args], capture_output=True, text=True, timeout=60
    )
    return done.returncode, (done.stdout + done.stderr).strip()


def apply(tenants, ports, health, last):
    """Writes the programs and the router config for `tenants`; reloads what changed."""
    wanted = {schema for _, schema in tenants}
    workers = common.workers()
    changed_programs = False
    for prefix, schema in tenants:
        if len(ports.get(schema, [])) != workers:
            used = {p for s, taken in ports.items() if s != schema for p in taken}
            free = []
            port = FIRST_WORKER_PORT
            while len(free) < workers:
                if port not in used:
                    free.append(port)
                port += 1
            ports[schema] = free
        path = os.path.join(PROGRAMS_DIR, f"{program_name(schema)}.conf")
        text = program_conf(schema, ports[schema])
        if not os.path.exists(path) or open(path).read() != text:
            write_atomic(path, text, 0o644)
            changed_programs = True
            listed = ", ".join(str(p) for p in ports[schema])
            log(f"serving tenant {prefix} ({schema}) with {workers} worker(s) on port(s) {listed}")
    for name in os.listdir(PROGRAMS_DIR):
        schema = name[len("tenant-"):-len(".conf")] if name.startswith("tenant-") and name.endswith(".conf") else None
        if schema is not None and schema not in wanted:
            os.remove(os.path.join(PROGRAMS_DIR, name))
            ports.pop(schema, None)
            changed_programs = True
            log(f"tenant {schema} left the registry: its worker is stopped")
    write_atomic(PORTS_FILE, json.dumps(ports), 0o644)
    conf = nginx_conf(tenants, ports, health)
    if changed_programs:
        code, out = supervisorctl("update")
        if code != 0:
            log(f"supervisorctl update failed: {out}")
            return False
    if conf != last.get("nginx"):
        write_atomic(NGINX_CONF + ".new", conf, 0o644)
        test = subprocess.run(
            ["nginx", "-t", "-q", "-e", "/dev/stderr", "-c", NGINX_CONF + ".new"], capture_output=True, text=True
        )
        if test.returncode != 0:
            log(f"router configuration rejected: {(test.stderr or test.stdout).strip()}")
            return False
        os.replace(NGINX_CONF + ".new", NGINX_CONF)
        code, out = supervisorctl("signal", "HUP", "router")
        if code != 0:
            log(f"router reload failed: {out}")
            return False
        last["nginx"] = conf
    return True


def main():
    try:
        common.check_env()
    except common.ConfigError as e:
        common.die(str(e))
    os.makedirs(PROGRAMS_DIR, exist_ok=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    ports = load_ports()
    last = {}
    tenants = []
    conn = None
    failing = None
    while True:
        try:
            if conn is None or conn.closed:
                conn = common.connect()
            tenants = common.registry(conn)
            health = "ok"
            if failing:
                log("the database answers again")
            failing = None
        except Exception as e:
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            if failing != reason:
                log(f"cannot read the tenant registry: {reason}")
            failing = reason
            health = f"database: {reason}"
            try:
                if conn is not None:
                    conn.close()
            except Exception:
                pass
            conn = None
        # Before the first successful poll the tenants are unknown: health stays 503.
        if health == "ok" or last.get("nginx") is not None:
            apply(tenants, ports, health, last)
        time.sleep(POLL_SECONDS)


if __name__ == "__main__":
    main()
