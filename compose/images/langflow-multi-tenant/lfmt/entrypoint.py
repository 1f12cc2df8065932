"""Entry point of the multi-tenant image: checks the environment the TaskDefinition must give
(one line naming what is missing, exit 1), prepares the runtime directory and runs supervisord
in this process, which runs the router (nginx), the registry poller (controller.py) and one
worker per tenant. Run with the system Python (Debian's supervisor package).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

SUPERVISORD_CONF = """\
[unix_http_server]
file={run}/supervisor.sock
chmod=0700

[supervisord]
nodaemon=true
; in the foreground supervisord logs to stdout itself: a log file would print every line twice
logfile=/dev/null
logfile_maxbytes=0
loglevel=info
pidfile={run}/supervisord.pid
childlogdir={run}/log

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{run}/supervisor.sock

; The router: nginx with an empty environment (no secrets in its /proc/<pid>/environ).
[program:router]
command=/usr/bin/env -i PATH=/usr/sbin:/usr/bin:/bin /usr/sbin/nginx -e stderr -c {run}/nginx.conf -g "daemon off;"
priority=10
autorestart=true
startsecs=1
startretries=1000
stopsignal=QUIT
redirect_stderr=true
stdout_logfile=/dev/fd/1
stdout_logfile_maxbytes=0

{forkserver}
; The registry poller: starts and stops tenant workers, regenerates and reloads the router.
[program:controller]
command=/app/.venv/bin/python {app}/controller.py
priority=20
autorestart=true
startsecs=1
startretries=1000
redirect_stderr=true
stdout_logfile=/dev/fd/1
stdout_logfile_maxbytes=0

[include]
files={run}/tenants/*.conf
"""


# The fork server (LFMT_START=fork): imports Langflow once; tenant workers are forked from it. An
# empty environment (env -i): nothing of the seed or the master password is in the memory or the
# /proc/<pid>/environ its workers inherit.
FORKSERVER_CONF = """
[program:forkserver]
command=/usr/bin/env -i PATH=/app/.venv/bin:/usr/bin:/bin LANG=C.UTF-8 HOME={state}/forkserver TMPDIR={state}/forkserver OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1 /app/.venv/bin/python {app}/forkserver.py {run}/fork.sock
priority=15
autorestart=true
startsecs=1
startretries=1000
stopsignal=TERM
stopwaitsecs=15
redirect_stderr=true
stdout_logfile=/dev/fd/1
stdout_logfile_maxbytes=0
"""


def main():
    common.not_dumpable()
    try:
        common.check_env()
        port = common.env("LANGFLOW_PORT", "7860")
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise common.ConfigError(f"LANGFLOW_PORT={port!r} is not a port number")
    except common.ConfigError as e:
        common.die(str(e))
    fault = common.fault()
    if fault:
        print(f"lfmt: WARNING: LFMT_FAULT={fault} breaks tenant isolation on purpose (tests only)", file=sys.stderr, flush=True)
    run = common.RUN_DIR
    for sub in ("", "tenants", "log", "nginx"):
        os.makedirs(os.path.join(run, sub), mode=0o700, exist_ok=True)
    for sub in ("tenants", "forkserver"):
        os.makedirs(os.path.join(common.STATE_DIR, sub), mode=0o700, exist_ok=True)
    start = os.environ.get("LFMT_START", "fork")
    if start not in ("fork", "spawn"):
        common.die(f"LFMT_START={start!r}: use fork or spawn")
    # A restarted container starts clean: tenants come back from the registry.
    for name in os.listdir(os.path.join(run, "tenants")):
        os.remove(os.path.join(run, "tenants", name))
    for name in ("ports.json",):
        try:
            os.remove(os.path.join(run, name))
        except FileNotFoundError:
            pass
    app = os.path.dirname(os.path.abspath(__file__))
    conf = os.path.join(run, "supervisord.conf")
    with open(conf, "w") as f:
        forkserver = FORKSERVER_CONF.format(run=run, app=app, state=common.STATE_DIR) if start == "fork" else ""
        f.write(SUPERVISORD_CONF.format(run=run, app=app, forkserver=forkserver))
    sys.path.insert(0, app)
    import controller  # only for its router configuration (psycopg is not needed for that)

    with open(os.path.join(run, "nginx.conf"), "w") as f:
        f.write(controller.nginx_conf([], {}, None))
    print(f"lfmt: listening on {common.env('LANGFLOW_HOST', '0.0.0.0')}:{port}; tenants from {common.REGISTRY_TABLE}", file=sys.stderr, flush=True)
    from supervisor import supervisord

    # supervisord runs in this (non-dumpable) process: its environment, which holds the seed,
    # is not readable through /proc by the tenants' processes.
    supervisord.main(["-c", conf])


if __name__ == "__main__":
    main()
