"""tenantmgr: manage the tenants of the multi-tenant Langflow image (run inside the container:
`docker exec <task> python /app/tenantmgr.py ...`, or ECS Exec on AWS).

  schema-add  --prefix P                                 a tenant: role + schema + Langflow's migrations
  schema-list                                            the registered tenants
  user-add    --schema S --username U [--password PW] [--superuser]
  user-reset  --schema S --username U [--password PW]
  user-list   --schema S

Every command takes --json. Generated passwords (16 characters, OS CSPRNG) are printed once and
stored only as bcrypt hashes. Errors: one line on stderr, exit 1, nothing half-made. A tenant
added through one task is served by every task within a few seconds (the registry poller).
"""
import argparse
import json
import os
import secrets
import shutil
import string
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lfmt"))

import common  # noqa: E402
from common import quote_ident, quote_literal  # noqa: E402

PASSWORD_ALPHABET = string.ascii_letters + string.digits
GENERATED_PASSWORD_LEN = 16
MIGRATION_TIMEOUT = 15 * 60
MIGRATION_LOCK_WAIT = 20 * 60
PYTHON = os.environ.get("LFMT_PYTHON", sys.executable)
MIGRATE_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lfmt", "migrate.py")


class Failure(Exception):
    """An error reported as one line."""


def generated_password():
    return "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(GENERATED_PASSWORD_LEN))


def check_prefix(prefix):
    if not common.PREFIX_RE.match(prefix or ""):
        raise Failure(
            f"invalid prefix {prefix!r}: use 1-50 characters of letters, digits, '_' or '-'"
        )


def check_schema(schema):
    match = common.SCHEMA_RE.match(schema or "")
    if not match:
        raise Failure(
            f"invalid schema id {schema!r}: expected <prefix>-<6 hex digits> such as acme-1a2b3c; "
            "see `python /app/tenantmgr.py schema-list`"
        )
    return match.group(1)


def check_username(username):
    if not username or not username.strip():
        raise Failure("invalid username: it is empty; pass --username NAME")
    if username.strip() != username:
        raise Failure(f"invalid username {username!r}: remove the leading/trailing spaces")
    if len(username) > 255 or any(ord(c) < 32 or ord(c) == 127 for c in username):
        raise Failure(f"invalid username {username!r}: use at most 255 printable characters")


def check_password(password):
    if password is None:
        return
    if password == "":
        raise Failure("invalid password: it is empty; pass a non-empty --password or omit it to generate one")
    if len(password.encode()) > 72:
        raise Failure(
            f"invalid password: it is {len(password.encode())} bytes long and bcrypt only uses 72; pass at most 72 bytes"
        )


def bcrypt_hash(password):
    import bcrypt

    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(12)).decode()


def admin():
    try:
        return common.connect()
    except Exception as e:  # the message names host/port, never the password
        raise Failure(f"cannot connect to the database as DB_USER: {one_line(e)}")


def tenant_conn(schema):
    import psycopg

    try:
        return psycopg.connect(common.conninfo(schema, role_password(schema)), autocommit=True)
    except Exception as e:
        raise Failure(f"cannot connect as the role of {schema}: {one_line(e)}")


def role_password(schema):
    return common.db_password(schema)


def one_line(error):
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def ensure_registry(conn):
    with conn.transaction():
        conn.execute(f"SELECT pg_advisory_xact_lock({common.TENANT_DDL_LOCK})")
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {common.REGISTRY_TABLE} ("
            " prefix text PRIMARY KEY CHECK (prefix ~ '^[A-Za-z0-9_-]{1,50}$'),"
            " schema_id text NOT NULL UNIQUE,"
            " created_at timestamptz NOT NULL DEFAULT now())"
        )
        conn.execute(f"REVOKE ALL ON {common.REGISTRY_TABLE} FROM PUBLIC")


def registered(conn, schema):
    if not common.registry_exists(conn):
        return None
    row = conn.execute(
        f"SELECT prefix FROM {common.REGISTRY_TABLE} WHERE schema_id = %s", (schema,)
    ).fetchone()
    return row[0] if row else None


def require_tenant(conn, schema):
    check_schema(schema)
    if registered(conn, schema) is None:
        raise Failure(f"unknown schema {schema}; see `python /app/tenantmgr.py schema-list`")


def schema_add(prefix):
    check_prefix(prefix)
    conn = admin()
    ensure_registry(conn)
    existing = conn.execute(
        f"SELECT schema_id FROM {common.REGISTRY_TABLE} WHERE prefix = %s", (prefix,)
    ).fetchone()
    if existing:
        raise Failure(f"prefix '{prefix}' already exists as schema {existing[0]}; pick another prefix")
    schema = f"{prefix}-{secrets.token_hex(3)}"
    ident = quote_ident(schema)
    database = quote_ident(common.env("DB_NAME"))
    superuser = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()[0]
    try:
        with conn.transaction():
            conn.execute(f"SELECT pg_advisory_xact_lock({common.TENANT_DDL_LOCK})")
            taken = conn.execute(
                f"SELECT schema_id FROM {common.REGISTRY_TABLE} WHERE prefix = %s", (prefix,)
            ).fetchone()
            if taken:
                raise Failure(f"prefix '{prefix}' already exists as schema {taken[0]}; pick another prefix")
            conn.execute(
                f"CREATE ROLE {ident} LOGIN PASSWORD {quote_literal(role_password(schema))} "
                "NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT"
            )
            if not superuser:
                # A non-superuser master (RDS) must be a member to create a schema owned by it.
                conn.execute(f"GRANT {ident} TO CURRENT_USER")
            conn.execute(f"CREATE SCHEMA {ident} AUTHORIZATION {ident}")
            conn.execute(f"COMMENT ON SCHEMA {ident} IS {quote_literal(common.SCHEMA_COMMENT)}")
            conn.execute(f"ALTER ROLE {ident} SET search_path = {ident}")
            conn.execute("REVOKE ALL ON SCHEMA public FROM PUBLIC")
            conn.execute(f"REVOKE ALL ON DATABASE {database} FROM PUBLIC")
            conn.execute(f"GRANT CONNECT, TEMPORARY ON DATABASE {database} TO {ident}")
    except Failure:
        raise
    except Exception as e:
        raise Failure(f"cannot create schema {schema}: {one_line(e)}")
    try:
        migrate(schema)
        with tenant_conn(schema) as tenant:
            insert_user(tenant, schema, common.OPERATOR_USERNAME, common.operator_password(schema), True)
            revision = alembic_revision(tenant, schema)
        # Last: the pollers of every task start serving the tenant once it is registered.
        conn.execute(
            f"INSERT INTO {common.REGISTRY_TABLE} (prefix, schema_id) VALUES (%s, %s)", (prefix, schema)
        )
    except BaseException as e:
        cleanup = drop_tenant(conn, schema)
        message = one_line(e) if not isinstance(e, KeyboardInterrupt) else "interrupted"
        if cleanup is None:
            raise Failure(f"schema-add {prefix} failed: {message}; nothing was left behind")
        raise Failure(f"schema-add {prefix} failed: {message}; cleaning up schema {schema} failed too: {cleanup}")
    return {"schema": schema, "prefix": prefix, "users": 1, "revision": revision}


def drop_tenant(conn, schema):
    """Removes a half-made tenant; None when it worked, else the reason."""
    ident = quote_ident(schema)
    try:
        with conn.transaction():
            conn.execute(f"SELECT pg_advisory_xact_lock({common.TENANT_DDL_LOCK})")
            conn.execute(f"DELETE FROM {common.REGISTRY_TABLE} WHERE schema_id = %s", (schema,))
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (schema,))
            conn.execute(f"DROP SCHEMA IF EXISTS {ident} CASCADE")
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (schema,)).fetchone()
            if exists:
                conn.execute(f"DROP OWNED BY {ident} CASCADE")
                conn.execute(f"DROP ROLE {ident}")
        return None
    except Exception as e:
        return one_line(e)


def migrate(schema):
    """Langflow's own database initialisation run as the tenant's role (its search_path pins it to
    the tenant schema), one tenant at a time in the database."""
    import psycopg

    lock = psycopg.connect(common.conninfo(schema, role_password(schema)), autocommit=True)
    try:
        waited = time.monotonic()
        announced = False
        while not lock.execute(f"SELECT pg_try_advisory_lock({common.MIGRATION_LOCK})").fetchone()[0]:
            if not announced:
                print(f"waiting for another tenant's migration to finish ...", file=sys.stderr, flush=True)
                announced = True
            if time.monotonic() - waited > MIGRATION_LOCK_WAIT:
                raise Failure(f"waited {MIGRATION_LOCK_WAIT} s for another tenant's migration; retry later")
            time.sleep(0.25)
        print(f"migrating schema {schema} with Langflow's own migrations (about a minute) ...", file=sys.stderr, flush=True)
        scratch = tempfile.mkdtemp(prefix="lfmt-migrate-")
        try:
            from urllib.parse import quote

            url = "postgresql://{}:{}@{}:{}/{}".format(
                quote(schema, safe=""),
                quote(role_password(schema), safe=""),
                common.env("DB_HOST"),
                common.env("DB_PORT"),
                quote(common.env("DB_NAME"), safe=""),
            )
            env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "HOME": scratch,
                "TMPDIR": scratch,
                "LANGFLOW_DATABASE_URL": url,
                "LANGFLOW_CONFIG_DIR": scratch,
                "LANGFLOW_AUTO_LOGIN": "false",
                "LANGFLOW_DO_NOT_TRACK": "true",
                "LANGFLOW_MODELS_DEV_REFRESH": "false",
                "LANGFLOW_LOG_LEVEL": "error",
                "PYTHONUNBUFFERED": "1",
            }
            try:
                done = subprocess.run(
                    [PYTHON, MIGRATE_SCRIPT], env=env, capture_output=True, text=True, timeout=MIGRATION_TIMEOUT
                )
            except subprocess.TimeoutExpired:
                raise Failure(f"Langflow's migration of {schema} took over {MIGRATION_TIMEOUT} s")
            if done.returncode != 0:
                last = [l for l in done.stderr.splitlines() if l.strip()]
                # The URL (with the role password) is never echoed: only Langflow's last line is.
                raise Failure(
                    f"Langflow's migration of {schema} failed (exit {done.returncode}): "
                    + (last[-1].replace(role_password(schema), "***") if last else "(no output)")
                )
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    finally:
        lock.close()


def alembic_revision(conn, schema):
    row = conn.execute(
        "SELECT 1 FROM information_schema.tables WHERE table_schema = %s AND table_name = 'alembic_version'", (schema,)
    ).fetchone()
    if not row:
        return None
    row = conn.execute(f"SELECT version_num FROM {quote_ident(schema)}.alembic_version LIMIT 1").fetchone()
    return row[0] if row else None


def user_table(schema):
    return f'{quote_ident(schema)}."user"'


def find_user(conn, schema, username):
    row = conn.execute(
        f"SELECT username FROM {user_table(schema)} WHERE lower(username) = lower(%s)", (username,)
    ).fetchone()
    return row[0] if row else None


def insert_user(conn, schema, username, password, superuser):
    import uuid

    conn.execute(
        f"INSERT INTO {user_table(schema)} (id, username, password, is_active, is_superuser, create_at, updated_at) "
        "VALUES (%s, %s, %s, true, %s, now(), now())",
        (uuid.uuid4(), username, bcrypt_hash(password), superuser),
    )


def schema_list():
    conn = admin()
    tenants = []
    for prefix, schema in common.registry(conn):
        users = 0
        revision = None
        exists = conn.execute(
            "SELECT 1 FROM information_schema.tables WHERE table_schema = %s AND table_name = 'user'", (schema,)
        ).fetchone()
        if exists:
            users = conn.execute(f"SELECT count(*) FROM {user_table(schema)}").fetchone()[0]
            revision = alembic_revision(conn, schema)
        tenants.append({"schema": schema, "prefix": prefix, "users": users, "revision": revision})
    return tenants


def user_add(schema, username, password, superuser):
    check_schema(schema)
    check_username(username)
    check_password(password)
    require_tenant(admin(), schema)
    generated = password is None
    password = password if password is not None else generated_password()
    with tenant_conn(schema) as conn:
        if find_user(conn, schema, username) is not None:
            raise Failure(
                f"user {username!r} already exists in {schema} (usernames are case-insensitive); "
                "use `user-reset` to change its password"
            )
        try:
            insert_user(conn, schema, username, password, superuser)
        except Exception as e:
            raise Failure(f"cannot add user {username!r} to {schema}: {one_line(e)}")
    return {"schema": schema, "username": username, "password": password, "generated": generated}


def user_reset(schema, username, password):
    check_schema(schema)
    check_username(username)
    check_password(password)
    require_tenant(admin(), schema)
    generated = password is None
    password = password if password is not None else generated_password()
    with tenant_conn(schema) as conn:
        stored = find_user(conn, schema, username)
        if stored is None:
            raise Failure(
                f"unknown user {username!r} in {schema}; see `python /app/tenantmgr.py user-list --schema {schema}`"
            )
        conn.execute(
            f"UPDATE {user_table(schema)} SET password = %s, updated_at = now() WHERE username = %s",
            (bcrypt_hash(password), stored),
        )
    return {"schema": schema, "username": stored, "password": password, "generated": generated}


def user_list(schema):
    check_schema(schema)
    require_tenant(admin(), schema)
    with tenant_conn(schema) as conn:
        rows = conn.execute(
            "SELECT username, is_active, is_superuser, "
            "to_char(create_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "
            "to_char(last_login_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') "
            f"FROM {user_table(schema)} ORDER BY lower(username)"
        ).fetchall()
    return [
        {"username": u, "active": a, "superuser": s, "created_at": c or "", "last_login_at": l}
        for u, a, s, c, l in rows
    ]


def table(headers, rows):
    widths = [max(len(str(x)) for x in [h] + [r[i] for r in rows]) for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()
    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


def parser():
    p = argparse.ArgumentParser(prog="tenantmgr.py", description="Tenants of the multi-tenant Langflow image.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add = sub.add_parser("schema-add", help="create a tenant: role + schema + Langflow tables")
    add.add_argument("--prefix", required=True, help="URL prefix (/tenant/PREFIX/): 1-50 of [A-Za-z0-9_-]")
    sub.add_parser("schema-list", help="list tenants")
    for name, text in (("user-add", "add a Langflow user"), ("user-reset", "set a new password")):
        s = sub.add_parser(name, help=text)
        s.add_argument("--schema", required=True)
        s.add_argument("--username", required=True)
        s.add_argument("--password", help="omit to generate one (16 characters, shown once)")
        if name == "user-add":
            s.add_argument("--superuser", action="store_true", help="make the user a Langflow superuser")
    ul = sub.add_parser("user-list", help="list a tenant's users")
    ul.add_argument("--schema", required=True)
    for s in sub.choices.values():
        s.add_argument("--json", action="store_true", help="print JSON")
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    try:
        common.check_env()
        if args.command == "schema-add":
            result = schema_add(args.prefix)
            if args.json:
                print(json.dumps(result))
            else:
                print(f"✅ Successfully created tenant schema: {result['schema']}")
                print(f"Prefix: {result['prefix']}")
                print(f"Schema ID: {result['schema']}")
                print(f"Revision: {result['revision']}")
                print(f"URL path: /tenant/{result['prefix']}/")
        elif args.command == "schema-list":
            tenants = schema_list()
            if args.json:
                print(json.dumps(tenants))
            else:
                print(table(["Prefix", "Schema ID", "Users", "Revision"],
                            [[t["prefix"], t["schema"], t["users"], t["revision"] or "-"] for t in tenants]))
        elif args.command in ("user-add", "user-reset"):
            if args.command == "user-add":
                result = user_add(args.schema, args.username, args.password, args.superuser)
                headline = f"✅ Successfully created user: {result['username']}"
            else:
                result = user_reset(args.schema, args.username, args.password)
                headline = f"✅ Successfully reset the password of user: {result['username']}"
            if args.json:
                print(json.dumps(result))
            else:
                print(headline)
                print(f"Schema ID: {result['schema']}")
                print(f"Username: {result['username']}")
                if result["generated"]:
                    print(f"Password: {result['password']}")
                    print("(shown once: it is stored only as a bcrypt hash)")
        elif args.command == "user-list":
            users = user_list(args.schema)
            if args.json:
                print(json.dumps(users))
            else:
                print(table(["Username", "Active", "Superuser", "Created", "Last login"],
                            [[u["username"], u["active"], u["superuser"], u["created_at"], u["last_login_at"] or "-"]
                             for u in users]))
    except (Failure, common.ConfigError) as e:
        common.die(str(e))
    except KeyboardInterrupt:
        common.die("interrupted")
    return 0


if __name__ == "__main__":
    sys.exit(main())
