"""Langflow fork server: import Langflow once, fork one worker per tenant.

Run from the Langflow venv as ``python langflow_forkserver.py SOCKET``. The parent imports
``langflow.main`` (the ~20 s / ~450 MB every instance otherwise pays) before any thread starts
and before any tenant setting is read, then serves requests on the Unix socket SOCKET (its
directory 0700), one per connection, answered with one JSON line:

- ``ping`` -> ``{"ok": true, "pid": P, "import_seconds": S, "hazards": [...], "import_env": [...]}``:
  ``hazards`` lists why forking is unsafe (empty = safe);
- ``fork NAME`` followed by one JSON line ``{"env": {...}, "cwd": D, "log": F, "host": H,
  "port": P}`` -> ``{"ok": true, "pid": W}`` or ``{"ok": false, "error": "..."}``. The server
  forks as soon as it has read the first line; the CHILD reads the JSON (the tenant's settings
  and secrets never pass through the server, so no later worker inherits them from its memory),
  checks it, answers, applies its own environment, resets what the import cached from the
  server's, and builds its app with ``uvicorn`` (``langflow.main:setup_app`` as a factory).
  Optional: ``"log": null`` (keep the server's stdout), ``"uvicorn": {...}`` (more
  ``uvicorn.Config`` settings, e.g. ``proxy_headers``), ``"dumpable": false`` (the worker's
  memory and /proc files unreadable to other processes of the same uid), ``"record_env": true``
  (the worker writes the environment it applied to ``environ/<pid>.json`` beside the socket,
  0600, removed when it is reaped). A live worker of the same NAME is replaced (killed first).

What makes the fork point safe is measured, not assumed: while importing, the server records
every environment variable read (and the prefixes of settings classes that scanned the whole
environment). A worker whose environment differs from the server's in such a variable is refused
(``import-time variable X differs``) unless the variable is one whose cached values the worker
resets (HOME, XDG_CACHE_HOME, TMPDIR, TMP, TEMP). Under the same watch the server also does the
start-up work that depends only on the code and the venv (route analysis, typed signatures,
installed-distribution and Extension discovery) so that workers read it instead. Threads other
than the main one (Python's, or native ones outside the allow-list), running event loops or open
sockets after the import are hazards: then every fork is refused, and the harness starts tenants
as separate processes.

Workers lead their own session (``setsid``: the harness signals their process group), die with
the server (``PR_SET_PDEATHSIG``), and are reaped by it; their exits are logged here.
"""

import collections
import ctypes
import gc
import json
import os
import signal
import socket
import sys
import threading
import time
import traceback

# Variables whose import-time values the worker recomputes (see reset_import_caches).
RESETTABLE = {"HOME", "XDG_CACHE_HOME", "TMPDIR", "TMP", "TEMP"}
# Native threads that libraries start at import and that survive fork by design (jemalloc's
# background purger is re-created in the child by its own fork handlers).
ALLOWED_NATIVE_THREADS = {"jemalloc_bg_thd"}
# Whole-environment scans at import whose use is known: module -> variables they keep.
KNOWN_SCANS = {
    # platform.architecture() copies the environment for a `file` subprocess: nothing kept.
    "croniter": (),
    "networkx": ("NETWORKX_",),
    # httpx clients created at import keep the proxy variables.
    "httpx": ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy",
              "https_proxy", "all_proxy", "no_proxy"),
}
# What a worker imports while it starts (measured on Langflow 1.13 with Postgres: the modules new
# in sys.modules after setup_app and its lifespan). Imported here, under the same watch as
# langflow.main, so their pages are shared rather than copied into every worker; a name missing
# from another Langflow version is skipped.
PREWARM = """
anyio._backends._asyncio anyio._core._resources anyio._core._sockets anyio._core._streams
anyio.abc._eventloop anyio.abc._sockets anyio.abc._testing anyio.from_thread
anyio.streams.stapled anyio.streams.tls asgiref.compatibility asgiref.current_thread_executor
asgiref.local asgiref.sync asyncer._compat asyncer._main ctypes.util
langflow.alembic.expand_compat langflow.alembic.warning_filters
langflow.api.utils.mcp.agentic_mcp langflow.api.utils.mcp.backfill langflow.cli.admin.client
langflow.cli.admin.commands langflow.cli.admin.config langflow.cli.admin.directory_reconcile
langflow.cli.admin.manifest langflow.cli.admin.reconcile langflow.interface.importing.utils
langflow.preload langflow.services.audit.retention langflow.services.auth.factory
langflow.services.auth.service langflow.services.authorization.factory
langflow.services.background_execution.factory langflow.services.background_execution.metrics
langflow.services.background_execution.metrics_collector
langflow.services.catalog_policy.factory langflow.services.catalog_policy.service
langflow.services.chat.factory langflow.services.checkpoint.factory
langflow.services.checkpoint.store langflow.services.connection.factory
langflow.services.database.factory langflow.services.job_queue.factory
langflow.services.jobs.factory langflow.services.session.factory
langflow.services.session.service langflow.services.session.utils
langflow.services.shared_component_cache.factory
langflow.services.shared_component_cache.service langflow.services.state.factory
langflow.services.state.service langflow.services.storage.factory
langflow.services.store.factory langflow.services.store.service
langflow.services.task.audit_cleanup langflow.services.task.factory
langflow.services.task.model_provider_policy_refresh langflow.services.telemetry.factory
langflow.services.telemetry_writer.factory langflow.services.telemetry_writer.service
langflow.services.tracing.factory langflow.services.tracing.service
langflow.services.transaction.factory langflow.services.transaction.service
langflow.services.triggers.binding langflow.services.triggers.correlation
langflow.services.triggers.dispatcher langflow.services.triggers.factory
langflow.services.triggers.scheduler langflow.services.triggers.source_errors
langflow.services.triggers.source_runtime langflow.services.triggers.subscriptions
langflow.services.variable.factory langflow.utils.migration langflow.utils.security_posture
lfx.base.models.models_dev_catalog lfx.cli._observability_commands lfx.cli._serve_help
lfx.cli.command_plugins lfx.cli.commands lfx.cli.run lfx.cli.serve_app lfx.cli.serve_identity
lfx.cli.serve_workflow lfx.services.executor.factory lfx.services.executor.service
lfx.services.extension_events.factory lfx.services.extension_events.service
lfx.services.shared_component_cache.factory lfx.services.shared_component_cache.service
lfx.services.tracing lfx.services.transaction.service lfx.utils.sandbox.base
lfx.utils.sandbox.exec_sandbox lfx.utils.sandbox.registry multiprocess.__info__
multiprocess.context multiprocess.process multiprocess.reduction
opentelemetry.instrumentation._semconv opentelemetry.instrumentation.asgi.types
opentelemetry.instrumentation.asgi.version opentelemetry.instrumentation.dependencies
opentelemetry.instrumentation.fastapi.package opentelemetry.instrumentation.fastapi.version
opentelemetry.instrumentation.instrumentor opentelemetry.instrumentation.propagators
opentelemetry.instrumentation.sqlalchemy.engine opentelemetry.instrumentation.sqlalchemy.package
opentelemetry.instrumentation.sqlalchemy.version
opentelemetry.instrumentation.sqlcommenter_utils opentelemetry.instrumentation.utils
opentelemetry.semconv._incubating.attributes.db_attributes
opentelemetry.semconv._incubating.attributes.http_attributes
opentelemetry.semconv._incubating.attributes.net_attributes
opentelemetry.semconv._incubating.attributes.user_agent_attributes
opentelemetry.semconv._incubating.metrics.http_metrics
opentelemetry.semconv.attributes.client_attributes
opentelemetry.semconv.attributes.db_attributes opentelemetry.semconv.attributes.http_attributes
opentelemetry.semconv.attributes.network_attributes
opentelemetry.semconv.attributes.server_attributes
opentelemetry.semconv.attributes.url_attributes
opentelemetry.semconv.attributes.user_agent_attributes
opentelemetry.semconv.metrics.http_metrics opentelemetry.semconv.schemas
opentelemetry.util._importlib_metadata opentelemetry.util.http.constants psycopg
aiobotocore.session aiobotocore.client aiobotocore.args aiobotocore.config aiobotocore.endpoint
aiobotocore.paginate aiobotocore.httpchecksum aiobotocore.waiter botocore.session botocore.client
botocore.args botocore.translate botocore.waiter botocore.retries.adaptive
botocore.retries.standard botocore.docs.service uvicorn.loops.auto uvicorn.loops.uvloop
uvicorn.protocols.http.auto uvicorn.protocols.http.httptools_impl uvicorn.protocols.utils
uvicorn.protocols.http.flow_control uvicorn.protocols.websockets.auto
uvicorn.protocols.websockets.websockets_impl uvicorn.lifespan.on uvicorn.middleware.proxy_headers
""".split()
# The routers langflow.main includes in every app, by their names there. FastAPI 0.165 analyses an included
# router's routes (signatures, dependencies, response fields) lazily and keeps the result on the
# module-level inclusion objects; every app built from them (one per worker) reads it when it
# includes them. Analysing them here, under the import's watch, shares that work.
ROUTERS = ("router", "health_check_router", "log_router")
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
# Exit code of a child that refused its request (logged as "refused", not as a crash).
REFUSED_EXIT = 3


def log(message):
    print(f"forkserver: {message}", flush=True)


class ImportWatch:
    """Records what the import reads from the environment."""

    def __init__(self):
        self.reads = set()
        self.prefixes = set()
        self.unknown_scans = []

    def scanned_by(self):
        for frame in reversed(traceback.extract_stack()[:-3]):
            path = frame.filename
            if "site-packages/" in path:
                return path.split("site-packages/")[1].split("/")[0]
        return "python"

    def install(self):
        watch = self
        original = os.environ

        class Tracking(os._Environ):
            def __getitem__(self, key):
                watch.reads.add(key)
                return super().__getitem__(key)

            def __contains__(self, key):
                watch.reads.add(key)
                return super().__contains__(key)

            def get(self, key, default=None):
                watch.reads.add(key)
                return super().get(key, default)

            def __iter__(self):
                module = watch.scanned_by()
                if module == "pydantic_settings":
                    pass  # the settings class's prefix is recorded by the hook below
                elif module in KNOWN_SCANS:
                    watch.prefixes.update(KNOWN_SCANS[module])
                else:
                    watch.unknown_scans.append(module)
                return super().__iter__()

        os.environ = Tracking(original._data, original.encodekey, original.decodekey,
                              original.encodevalue, original.decodevalue)
        import pydantic_settings.main as settings_main

        base_init = settings_main.BaseSettings.__init__

        def settings_init(settings, *args, **kwargs):
            prefix = settings.model_config.get("env_prefix") or ""
            if prefix:
                watch.prefixes.add(prefix)
            else:
                watch.unknown_scans.append(f"{type(settings).__module__}.{type(settings).__name__}")
            base_init(settings, *args, **kwargs)

        settings_main.BaseSettings.__init__ = settings_init
        return lambda: (setattr(os, "environ", original),
                        setattr(settings_main.BaseSettings, "__init__", base_init))

    def relevant(self, key):
        return key in self.reads or any(key.startswith(p) for p in self.prefixes)


def native_threads():
    names = []
    for task in os.listdir("/proc/self/task"):
        if int(task) == os.getpid():
            continue
        try:
            with open(f"/proc/self/task/{task}/comm") as comm:
                names.append(comm.read().strip())
        except OSError:
            pass
    return names


def open_sockets(own):
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:") and int(fd) not in own:
            found.append(f"fd {fd}")
    return found


def hazards(watch):
    found = []
    if sys.platform != "linux":
        found.append(f"platform {sys.platform}: fork is only proven on Linux")
    extra = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
    if extra:
        found.append(f"Python threads running after import: {', '.join(extra)}")
    native = [n for n in native_threads() if n not in ALLOWED_NATIVE_THREADS]
    if len(native) > len(extra):
        found.append(f"native threads running after import: {', '.join(native)}")
    try:
        import asyncio

        if asyncio.events._get_running_loop() is not None:
            found.append("an asyncio event loop is running after import")
    except Exception:  # noqa: BLE001
        pass
    sockets = open_sockets(set())
    if sockets:
        found.append(f"sockets open after import: {', '.join(sockets)}")
    if watch.unknown_scans:
        found.append("the environment was scanned at import by "
                     + ", ".join(sorted(set(watch.unknown_scans)))
                     + ": which variables it kept cannot be told")
    return found


def share_signature_analysis():
    """FastAPI derives each endpoint's and dependency's typed signature again for every app it
    builds (a worker builds one): remember it per function, so what the server derived while
    analysing the routers is what every worker reads. A signature is a function of the function
    object alone (its parameters and its module's names), never of settings."""
    import inspect

    import fastapi.dependencies.utils as utils

    original = getattr(utils, "get_typed_signature", None)
    if original is None:
        return
    memo = {}

    def get_typed_signature(call):
        if not inspect.isfunction(call):
            return original(call)
        found = memo.get(call)
        if found is None:
            found = memo[call] = original(call)
        return found

    utils.get_typed_signature = get_typed_signature


def warm_installed_distributions():
    """Langflow maps installed packages to distributions (lru-cached) while building its component
    types at every start: the venv is the server's and every worker's, so map it once here."""
    try:
        from lfx.custom.dependency_analyzer import _get_packages_distributions
    except ImportError:
        return
    _get_packages_distributions()


def share_extension_discovery():
    """Langflow looks for installed Extensions at every start by reading the file list of every
    installed distribution. The venv is the server's and every worker's: remember the answer per
    import path (``sys.path``), found once here. Packages installed while the server runs are not
    seen by it anyway (their modules are not imported either): restart it after installing."""
    try:
        import lfx.extension.loader._plugins as plugins
        import lfx.extension.loader._startup as startup
    except ImportError:
        return
    original = getattr(plugins, "_resolve_distribution_roots", None)
    if original is None:
        return
    memo = {}

    def resolve_distribution_roots(distributions=None):
        if distributions is not None:
            return original(distributions)
        key = tuple(sys.path)
        if key not in memo:
            memo[key] = original(None)
        return {name: (root, list(manifests)) for name, (root, manifests) in memo[key].items()}

    for module in (plugins, startup):
        if getattr(module, "_resolve_distribution_roots", None) is original:
            module._resolve_distribution_roots = resolve_distribution_roots
    resolve_distribution_roots()


def warm_route_analysis():
    """Analyses the routers langflow.main includes, once (see ROUTERS); returns how many routes."""
    import fastapi.routing
    import langflow.main

    iterate = getattr(fastapi.routing, "_iter_routes_with_context", None)
    if iterate is None:  # another FastAPI: it analyses routes elsewhere; nothing to share here
        return 0
    count = 0
    for name in ROUTERS:
        router = getattr(langflow.main, name, None)
        if isinstance(router, fastapi.routing.APIRouter):
            count += sum(1 for _ in iterate(router.routes))
    return count


def reset_import_caches():
    """Recomputes, in a worker, what the import derived from the server's environment."""
    import tempfile

    tempfile.tempdir = None
    from platformdirs import user_cache_dir

    for module_name in ("lfx.services.cache.utils", "langflow.services.cache.utils"):
        module = sys.modules.get(module_name)
        if module is not None and hasattr(module, "CACHE_DIR"):
            module.CACHE_DIR = user_cache_dir("langflow", "langflow")
    # The service manager (settings, database, auth...) is built from the worker's environment.
    manager = sys.modules.get("lfx.services.manager")
    if manager is not None:
        manager._service_manager = None
    numpy_random = sys.modules.get("numpy.random")
    if numpy_random is not None:
        numpy_random.seed()
    scope_migration_lock()


def scope_migration_lock():
    """Langflow 1.13 takes ONE database-wide advisory lock around its migration check at every
    start (polled every 2 s), so N tenants of one database start one after another. Tenants own
    disjoint schemas: the worker scopes the lock to its database role (its tenant), which keeps
    what the lock is for (instances of the same tenant still serialize) without queueing tenants
    behind each other."""
    import hashlib
    from urllib.parse import unquote, urlsplit

    url = os.environ.get("LANGFLOW_DATABASE_URL", "")
    try:
        import langflow.services.database.service as service
    except ImportError:
        return
    if not hasattr(service, "_MIGRATION_ADVISORY_LOCK_ID") or not url:
        return
    role = unquote(urlsplit(url).username or "")
    if not role:
        return
    digest = hashlib.sha256(f"langflow-migration-lock/{role}".encode()).digest()
    service._MIGRATION_ADVISORY_LOCK_ID = int.from_bytes(digest[:8], "big", signed=True)


def read_line(connection, limit):
    """One line from `connection`, read byte by byte (nothing after it is consumed)."""
    data = bytearray()
    while not data.endswith(b"\n"):
        chunk = connection.recv(1)
        if not chunk:
            break
        data += chunk
        if len(data) > limit:
            raise ValueError("request line too long")
    return bytes(data)


def run_worker(name, connection, server_pid, context):
    """The forked child: reads its request, answers, becomes the tenant's app. Never returns."""
    code = 1
    forked_at = time.monotonic()
    try:
        os.setsid()
        libc = ctypes.CDLL(None, use_errno=True)
        # Unreadable to other processes of the uid until the request says otherwise: the request
        # (the tenant's secrets) is read next.
        libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != server_pid:
            os._exit(1)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        connection.settimeout(30)

        def answer(reply):
            connection.sendall(json.dumps(reply).encode() + b"\n")

        try:
            request = json.loads(read_line(connection, 1 << 20))
            env = {**context["derived"], **request["env"]}
            differing = sorted(
                key
                for key in set(env) | set(context["import_env"])
                if context["relevant"](key)
                and key not in RESETTABLE
                and env.get(key) != context["import_env"].get(key)
            )
        except Exception as error:  # noqa: BLE001
            answer({"ok": False, "error": f"bad fork request: {type(error).__name__}: {error}"})
            os._exit(REFUSED_EXIT)
        if differing:
            answer({"ok": False, "error": "import-time variable(s) " + ", ".join(differing)
                    + " differ from the fork server's; start this tenant as its own process"
                    " ([langflow] start = \"spawn\")"})
            os._exit(REFUSED_EXIT)
        if request.get("dumpable") is not False:
            libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)
        if request.get("record_env"):
            path = os.path.join(context["environ_dir"], f"{os.getpid()}.json")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                json.dump(env, out)
        answer({"ok": True, "pid": os.getpid()})
        connection.close()
        del request["env"]
        null_fd = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null_fd, 0)
        if request.get("log"):
            flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
            log_fd = os.open(request["log"], flags, 0o600)
            os.dup2(log_fd, 1)
            os.dup2(log_fd, 2)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(env)
        del env
        reset_import_caches()
        sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
        sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
        # The imported objects stay frozen: a full collection would touch (copy) every shared page.
        import uvicorn

        modules_at_fork = set(sys.modules)

        class Server(uvicorn.Server):
            async def startup(self, sockets=None):
                await super().startup(sockets=sockets)
                if not self.should_exit:
                    # What the fork server could import (PREWARM) to share it: a long list here
                    # means the list does not fit this Langflow.
                    new = collections.Counter(m.split(".")[0] for m in sys.modules
                                              if m not in modules_at_fork)
                    print(f"serving {time.monotonic() - forked_at:.1f} s after the fork; "
                          f"{sum(new.values())} modules imported after the fork"
                          + (": " + ", ".join(f"{k} ({v})" for k, v in new.most_common(8))
                             if new else ""), flush=True)

        config = uvicorn.Config(
            "langflow.main:setup_app",
            factory=True,
            host=request["host"],
            port=int(request["port"]),
            access_log=False,
            **request.get("uvicorn", {}),
        )
        print(f"forked from fork server {server_pid} as {name}", flush=True)
        Server(config).run()
        code = 0
    except BaseException:  # noqa: BLE001
        traceback.print_exc()
        sys.stderr.flush()
    os._exit(code)


def main():
    socket_path = sys.argv[1]
    started = time.monotonic()
    watch = ImportWatch()
    uninstall = watch.install()
    try:
        import langflow.main  # noqa: F401  the expensive part, once

        import importlib

        for name in PREWARM:
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001  absent in this version: nothing to share
                pass
        share_signature_analysis()
        routes = warm_route_analysis()
        warm_installed_distributions()
        share_extension_discovery()
    finally:
        uninstall()
    import uvicorn  # noqa: F401
    import_env = dict(os.environ)
    # What the interpreter (locale coercion) or the import set by themselves: a fresh process
    # would set them again, so every worker gets them too.
    with open("/proc/self/environ", "rb") as environ:
        given = {entry.split(b"=", 1)[0].decode(errors="replace")
                 for entry in environ.read().split(b"\0") if b"=" in entry}
    derived = {k: v for k, v in import_env.items() if k not in given}
    import_seconds = time.monotonic() - started
    found = hazards(watch)
    # Keep the imported objects out of the collector's reach: a collection in a worker would
    # otherwise touch (and copy) every shared page.
    gc.collect()
    gc.freeze()
    log(f"imported Langflow in {import_seconds:.1f} s ({routes} routes analysed); "
        + ("fork is safe" if not found else "fork is UNSAFE: " + "; ".join(found)))

    environ_dir = os.path.join(os.path.dirname(os.path.abspath(socket_path)), "environ")
    os.makedirs(environ_dir, mode=0o700, exist_ok=True)
    for stale in os.listdir(environ_dir):
        os.unlink(os.path.join(environ_dir, stale))
    context = {"derived": derived, "import_env": import_env, "relevant": watch.relevant,
               "environ_dir": environ_dir}
    if os.path.exists(socket_path):
        os.unlink(socket_path)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    server.bind(socket_path)
    os.umask(old_umask)
    server.listen(16)
    server.settimeout(0.2)
    workers = {}
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(1))

    def reap():
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            name = workers.pop(pid, {}).get("name", "?")
            try:
                os.unlink(os.path.join(environ_dir, f"{pid}.json"))
            except FileNotFoundError:
                pass
            if os.WIFSIGNALED(status):
                reason = f"killed by signal {os.WTERMSIG(status)}"
            elif os.WEXITSTATUS(status) == REFUSED_EXIT:
                reason = "refused its request"
            else:
                reason = f"exit code {os.WEXITSTATUS(status)}"
            log(f"worker {name} (pid {pid}) stopped: {reason}")

    if derived:
        log("set by the interpreter or the import itself (given to every worker): "
            + ", ".join(sorted(derived)))

    def replace(name):
        """Stops a live worker of the same name (its client was restarted without it)."""
        for pid, worker in list(workers.items()):
            if worker["name"] == name:
                log(f"replacing worker {name} (pid {pid})")
                try:
                    os.killpg(pid, signal.SIGKILL)
                except OSError:
                    pass
                deadline = time.monotonic() + 5
                while pid in workers and time.monotonic() < deadline:
                    reap()
                    time.sleep(0.02)

    def handle(header, connection):
        """Answers `header`; returns the reply, or None when a child answers instead."""
        op, _, name = header.partition(" ")
        if op == "ping":
            return {"ok": True, "pid": os.getpid(), "import_seconds": import_seconds,
                    "hazards": found,
                    "import_env": sorted(k for k in import_env if watch.relevant(k))}
        if op != "fork" or not name:
            return {"ok": False, "error": f"unknown request {header!r}"}
        if found:
            return {"ok": False, "error": "fork is unsafe here: " + "; ".join(found)}
        replace(name)
        pid = os.fork()
        if pid == 0:
            server.close()
            run_worker(name, connection, os.getppid(), context)
        workers[pid] = {"name": name}
        log(f"forked worker {name} as pid {pid}")
        return None

    while not stopping:
        reap()
        try:
            connection, _ = server.accept()
        except (socket.timeout, InterruptedError):
            continue
        with connection:
            connection.settimeout(10)
            try:
                header = read_line(connection, 256).decode().strip()
                reply = handle(header, connection)
            except Exception as error:  # noqa: BLE001
                reply = {"ok": False, "error": f"{type(error).__name__}: {error}"}
            if reply is not None:
                try:
                    connection.sendall(json.dumps(reply).encode() + b"\n")
                except OSError:
                    pass
    log("stopping: workers get SIGTERM")
    for pid in list(workers):
        try:
            os.killpg(pid, signal.SIGTERM)
        except OSError:
            pass
    deadline = time.monotonic() + 10
    while workers and time.monotonic() < deadline:
        reap()
        time.sleep(0.05)
    for pid in list(workers):
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
    reap()
    try:
        os.unlink(socket_path)
    except FileNotFoundError:
        pass


if __name__ == "__main__":
    main()
