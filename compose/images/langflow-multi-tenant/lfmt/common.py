"""Shared pieces of the reference multi-tenant image: its environment contract, the per-tenant
secrets derived from the key seed, the tenant registry in the database, naming rules and faults.

Everything here runs inside the container as uid 1000. Secrets never go to files or logs: they
are derived in memory from LANGFLOW_TENANT_KEY_SEED (a Secrets Manager secret in the Fargate
TaskDefinition), so every task of a service derives the same keys and no two tenants share one.
"""
import base64
import ctypes
import hashlib
import hmac
import os
import re
import sys

# The environment the TaskDefinition in aws/apps/fargate-stack.cfn.yaml gives the container.
REQUIRED_ENV = ("DB_HOST", "DB_PORT", "DB_NAME", "DB_USER", "DB_PASSWORD", "LANGFLOW_TENANT_KEY_SEED")
SEED_MIN_LEN = 32
# Langflow processes per tenant in one task (LANGFLOW_WORKERS, default 1): the router spreads each
# tenant's requests over them. Each is a forked Langflow app (~150-300 MB of its own).
MAX_WORKERS = 8
# Where per-tenant state (config dirs, temp files) lives inside the container.
STATE_DIR = os.environ.get("LFMT_STATE_DIR", "/var/lib/lfmt")
# Runtime files: supervisord and nginx configs, sockets, pid files.
RUN_DIR = os.environ.get("LFMT_RUN_DIR", "/run/lfmt")
# The tenant registry: one row per tenant, read by every task's controller.
REGISTRY_TABLE = "public.tenant_registry"
# Comment on every tenant schema (the harness's tenantmgr uses the same one).
SCHEMA_COMMENT = "langflow-infra tenant"
# Langflow 1.13 refuses to start with auto-login off unless a superuser is configured: every
# tenant has this operator superuser, its password derived from the seed.
OPERATOR_USERNAME = "langflow-infra-operator"
# Advisory locks shared with the harness's tenantmgr: tenant DDL, and one migration at a time
# (Langflow 1.13's own migration lock deadlocks with its CREATE INDEX CONCURRENTLY otherwise).
TENANT_DDL_LOCK = 0x6C66695F74656E74
MIGRATION_LOCK = 0x6C66695F6D696772
PREFIX_RE = re.compile(r"^[A-Za-z0-9_-]{1,50}$")
SCHEMA_RE = re.compile(r"^([A-Za-z0-9_-]{1,50})-([0-9a-f]{6})$")
# Faults that break isolation on purpose so the e2e suite can be shown to fail (never set them in
# a deployment): every tenant signs with one key; every tenant connects as the first tenant's
# role; every tenant connects as DB_USER with the default search_path (tables in public).
FAULTS = ("shared-secret-key", "shared-database-role", "public-schema")


class ConfigError(Exception):
    """A missing or invalid setting: one line naming it."""


def env(name, default=None):
    value = os.environ.get(name, "")
    return value if value != "" else default


def check_env():
    """The required variables, checked: raises ConfigError naming the first problem."""
    for name in REQUIRED_ENV:
        if env(name) is None:
            raise ConfigError(
                f"{name} is not set: the TaskDefinition must provide {name} "
                f"(required: {', '.join(REQUIRED_ENV)})"
            )
    if len(env("LANGFLOW_TENANT_KEY_SEED")) < SEED_MIN_LEN:
        raise ConfigError(
            f"LANGFLOW_TENANT_KEY_SEED is too short ({len(env('LANGFLOW_TENANT_KEY_SEED'))} chars): "
            f"it must be at least {SEED_MIN_LEN} characters (a Secrets Manager GenerateSecretString)"
        )
    if not env("DB_PORT").isdigit():
        raise ConfigError(f"DB_PORT={env('DB_PORT')!r} is not a port number")
    workers()
    fault()


def workers():
    """LANGFLOW_WORKERS: Langflow processes per tenant in this task (1 when unset)."""
    value = env("LANGFLOW_WORKERS", "1")
    if not value.isdigit() or not 1 <= int(value) <= MAX_WORKERS:
        raise ConfigError(
            f"LANGFLOW_WORKERS={value!r}: this image runs 1 to {MAX_WORKERS} workers per tenant; set the TaskDefinition's LANGFLOW_WORKERS in that range"
        )
    return int(value)


def fault():
    """The LFMT_FAULT switch (None in a real deployment)."""
    value = env("LFMT_FAULT")
    if value is None:
        return None
    if value not in FAULTS:
        raise ConfigError(f"LFMT_FAULT={value!r} is unknown; use one of {', '.join(FAULTS)} or unset it")
    return value


def _derive(purpose, schema):
    seed = env("LANGFLOW_TENANT_KEY_SEED").encode()
    digest = hmac.new(seed, f"{purpose}/{schema}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def secret_key(schema):
    """LANGFLOW_SECRET_KEY of a tenant: base64url_nopad(HMAC-SHA256(seed, 'langflow-secret-key/' + schema))."""
    return _derive("langflow-secret-key", schema)


def db_password(schema):
    """Password of the tenant's database role: base64url_nopad(HMAC-SHA256(seed, 'db-password/' + schema))."""
    return _derive("db-password", schema)


def operator_password(schema):
    """Password of the tenant's operator superuser (LANGFLOW_SUPERUSER_PASSWORD)."""
    return _derive("operator-password", schema)


def quote_ident(name):
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value):
    return "'" + value.replace("'", "''") + "'"


def conninfo(user=None, password=None):
    """libpq keyword connection string for DB_USER (or another role) on DB_HOST/DB_PORT/DB_NAME."""
    from psycopg.conninfo import make_conninfo

    return make_conninfo(
        host=env("DB_HOST"),
        port=env("DB_PORT"),
        dbname=env("DB_NAME"),
        user=user or env("DB_USER"),
        password=password if password is not None else env("DB_PASSWORD"),
        connect_timeout=10,
        application_name="lfmt",
    )


def connect(autocommit=True):
    import psycopg

    return psycopg.connect(conninfo(), autocommit=autocommit)


def registry_exists(conn):
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (REGISTRY_TABLE,)).fetchone()[0]


def registry(conn):
    """[(prefix, schema_id)] of every registered tenant, oldest first."""
    if not registry_exists(conn):
        return []
    rows = conn.execute(f"SELECT prefix, schema_id FROM {REGISTRY_TABLE} ORDER BY created_at, prefix").fetchall()
    return [(p, s) for p, s in rows]


def not_dumpable():
    """Makes this process's memory and /proc/<pid>/environ unreadable to other processes of the
    same uid (tenant code runs as the same uid as every other worker)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 4
    except Exception:  # not Linux: nothing to protect against here
        pass


def die(message):
    """One clear line on stderr and exit 1."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(1)
