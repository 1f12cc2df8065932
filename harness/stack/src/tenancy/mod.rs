//! tenantmgr: tenant schemas, their roles and their Langflow users, in the shared database.
//!
//! Tenant contract (see ARCHITECTURE.md): a tenant `acme` is a schema `acme-<6 hex>` owned by a
//! LOGIN role of the same name whose `search_path` is pinned to it and which has no rights on
//! `public` or any other schema. The schema is migrated to Alembic head by Langflow's own
//! migrations, run as that role ([`migrate`]). Tenant schemas are recognised by their comment
//! ([`SCHEMA_COMMENT`]), so the database itself is the registry: nothing else can drift from it.
//!
//! Invariants:
//! - every identifier reaching SQL is validated ([`naming`]) *and* quoted ([`harness_core::sql`]);
//! - a failed `schema_add` leaves no role, schema or secret behind; one cut off half-way (its
//!   process killed or interrupted) leaves a schema marked [`PROVISIONING_COMMENT`], which is
//!   never listed or served and is removed by the next `schema-add` or `up`
//!   ([`Tenancy::remove_unfinished`]);
//! - user passwords are stored only as bcrypt `$2b$12$` hashes; generated ones are returned once.

pub mod fixture;
pub mod migrate;
pub mod naming;

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;
use tokio_postgres::Client;

use crate::services::langflow;
use crate::services::postgres::PgTarget;
use harness_core::config::Config;
use harness_core::secret;
use harness_core::sql::{quote_ident, quote_literal};
use harness_core::state::{StateFiles, TenantSecrets};

/// Comment put on every tenant schema; schema listing is driven by it.
pub const SCHEMA_COMMENT: &str = "langflow-infra tenant";
/// Comment of a tenant schema whose `schema-add` has not finished (migration, operator user):
/// not a tenant yet. It becomes [`SCHEMA_COMMENT`] as the last step.
pub const PROVISIONING_COMMENT: &str = "langflow-infra tenant (provisioning)";
/// The superuser every tenant instance is started with (defined with the instance's settings).
pub use crate::services::langflow::OPERATOR_USERNAME;
/// Advisory lock key serialising tenant DDL: concurrent REVOKE/GRANT on the shared `public`
/// schema and database rows otherwise fail with "tuple concurrently updated".
const TENANT_DDL_LOCK: i64 = 0x6c66_695f_7465_6e74; // "lfi_tent"

/// bcrypt cost Langflow uses (`$2b$12$`).
pub const BCRYPT_COST: u32 = 12;

/// One tenant schema as `schema-list` shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TenantSchema {
    /// Schema id (`{prefix}-{6 hex}`), also its role's name.
    pub schema: String,
    /// Tenant prefix (URL path segment).
    pub prefix: String,
    /// Number of Langflow users in the schema.
    pub users: i64,
    /// Alembic revision the schema is at.
    pub revision: Option<String>,
}

/// One Langflow user as `user-list` shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TenantUser {
    /// Login name.
    pub username: String,
    /// Whether the user may log in.
    pub active: bool,
    /// Whether the user is a Langflow superuser.
    pub superuser: bool,
    /// Creation time (UTC, RFC 3339).
    pub created_at: String,
    /// Last login (UTC, RFC 3339), if any.
    pub last_login_at: Option<String>,
}

/// A user's credentials as created or reset; the password is shown once and never stored.
#[derive(Debug, Clone, Serialize)]
pub struct IssuedCredentials {
    /// Schema id.
    pub schema: String,
    /// Login name.
    pub username: String,
    /// The password in clear (generated or given).
    pub password: String,
    /// Whether it was generated.
    pub generated: bool,
}

/// tenantmgr over the harness's running Postgres.
pub struct Tenancy {
    config: Config,
    files: StateFiles,
    admin: PgTarget,
    caller_holds_lock: bool,
    migrator: migrate::Migrator,
}

/// Serialises read-modify-write of `secrets.json` between tasks of one process (parallel
/// `schema_add`s during `up`); the state lock serialises processes.
static SECRETS_UPDATE: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Tenancy {
    /// tenantmgr for the stack whose state lives in `files`; Postgres must be running.
    pub fn for_running_stack(config: &Config, files: &StateFiles) -> Result<Self> {
        let state = files.read_state()?.ok_or_else(|| {
            anyhow!("Postgres is not running; start the stack with `cargo xtask up`")
        })?;
        let postgres = state.services.get("postgres").ok_or_else(|| {
            anyhow!("Postgres is not part of the running stack; restart it with `cargo xtask down && cargo xtask up`")
        })?;
        let password = files.read_secrets()?.postgres_password.ok_or_else(|| {
            anyhow!(
                "no Postgres password in {}; run `cargo xtask down --volumes && cargo xtask up`",
                files.secrets_path().display()
            )
        })?;
        let runtime = harness_runtime::runtime::for_run(&state.runtime, config)?;
        Ok(Self::new(config, files, postgres.port, &password).with_runtime(runtime))
    }

    /// tenantmgr for a Postgres superuser on `port`.
    pub fn new(config: &Config, files: &StateFiles, port: u16, superuser_password: &str) -> Self {
        Self {
            config: config.clone(),
            files: files.clone(),
            admin: PgTarget::superuser(port, superuser_password, &config.postgres.database),
            caller_holds_lock: false,
            migrator: migrate::Migrator {
                runtime: std::sync::Arc::new(harness_runtime::runtime::native::NativeRuntime),
                run_marker: harness_runtime::runtime::run_marker(config),
            },
        }
    }

    /// Runs migrations in `runtime` (the run's): natively with the venv, in containers with the
    /// Langflow image.
    pub fn with_runtime(
        mut self,
        runtime: std::sync::Arc<dyn harness_runtime::runtime::Runtime>,
    ) -> Self {
        self.migrator.runtime = runtime;
        self
    }

    /// For callers that already hold the state lock (`up`): changes do not take it again.
    pub fn holding_stack_lock(mut self) -> Self {
        self.caller_holds_lock = true;
        self
    }

    fn lock(&self) -> Result<Option<nix::fcntl::Flock<std::fs::File>>> {
        if self.caller_holds_lock {
            Ok(None)
        } else {
            self.files.lock().map(Some)
        }
    }

    fn update_secrets(
        &self,
        change: impl FnOnce(&mut harness_core::state::Secrets) -> bool,
    ) -> Result<()> {
        let _guard = SECRETS_UPDATE.lock().unwrap_or_else(|e| e.into_inner());
        let mut all = self.files.read_secrets()?;
        if change(&mut all) {
            self.files.write_secrets(&all)?;
        }
        Ok(())
    }

    /// The superuser connection target (for checks and tests).
    pub fn admin_target(&self) -> &PgTarget {
        &self.admin
    }

    /// Connection target of a tenant's own role.
    pub fn tenant_target(&self, schema: &str) -> Result<PgTarget> {
        let secrets = self.files.read_secrets()?;
        let tenant = secrets.tenants.get(schema).ok_or_else(|| {
            anyhow!(
                "no credentials for schema {schema} in {}; recreate the tenant (schema-rm, schema-add)",
                self.files.secrets_path().display()
            )
        })?;
        Ok(PgTarget {
            port: self.admin.port,
            user: schema.to_string(),
            password: tenant.role_password.clone(),
            database: self.admin.database.clone(),
        })
    }

    /// The secrets of a tenant.
    pub fn tenant_secrets(&self, schema: &str) -> Result<TenantSecrets> {
        self.files
            .read_secrets()?
            .tenants
            .get(schema)
            .cloned()
            .ok_or_else(|| anyhow!("no secrets for schema {schema}"))
    }

    async fn connect(&self) -> Result<Client> {
        self.admin.connect().await
    }

    /// All tenant schemas, by prefix.
    pub async fn schema_list(&self) -> Result<Vec<TenantSchema>> {
        let client = self.connect().await?;
        let mut schemas = Vec::new();
        for schema in schemas_with_comment(&client, SCHEMA_COMMENT).await? {
            let Ok(prefix) = naming::parse_schema_id(&schema) else {
                continue;
            };
            let prefix = prefix.to_string();
            let users = count_users(&client, &schema).await?;
            let revision = alembic_revision(&client, &schema).await?;
            schemas.push(TenantSchema {
                schema,
                prefix,
                users,
                revision,
            });
        }
        schemas.sort_by(|a, b| a.prefix.cmp(&b.prefix));
        Ok(schemas)
    }

    /// The schema of tenant `prefix`, if it exists.
    pub async fn find_prefix(&self, prefix: &str) -> Result<Option<TenantSchema>> {
        Ok(self
            .schema_list()
            .await?
            .into_iter()
            .find(|s| s.prefix == prefix))
    }

    /// Creates tenant `prefix`: role, schema (search_path pinned, no other rights), secrets, and
    /// the Langflow tables via Langflow's own migrations. All or nothing.
    pub async fn schema_add(&self, prefix: &str) -> Result<TenantSchema> {
        naming::validate_prefix(prefix)?;
        let _lock = self.lock()?;
        if !self.caller_holds_lock {
            // Alone under the state lock: no other schema-add can be in progress.
            self.remove_unfinished().await?;
        }
        if let Some(existing) = self.find_prefix(prefix).await? {
            bail!(
                "prefix '{prefix}' already exists as schema {}; pick another prefix or remove it with \
                 `cargo xtask tenant schema-rm --schema {} --yes`",
                existing.schema,
                existing.schema
            );
        }
        let schema = naming::schema_id(prefix, &secret::hex(naming::SCHEMA_SUFFIX_LEN / 2));
        let secrets = TenantSecrets {
            role_password: secret::password(32),
            secret_key: secret::urlsafe_key(),
            operator_password: secret::password(32),
        };
        let client = self.connect().await?;
        let created = self
            .create_role_and_schema(&client, &schema, &secrets.role_password)
            .await;
        if let Err(e) = created {
            return Err(e.context(format!("cannot create schema {schema}")));
        }
        let finish = async {
            self.update_secrets(|all| {
                all.tenants.insert(schema.clone(), secrets.clone());
                true
            })?;
            let target = self.tenant_target(&schema)?;
            migrate::upgrade_to_head(&self.config, &self.migrator, &target).await?;
            insert_user(
                &client,
                &format!("{}.\"user\"", quote_ident(&schema)),
                &schema,
                OPERATOR_USERNAME,
                &secrets.operator_password,
                true,
            )
            .await?;
            // The last step: from now on it is a tenant.
            client
                .execute(
                    &format!(
                        "COMMENT ON SCHEMA {} IS {}",
                        quote_ident(&schema),
                        quote_literal(SCHEMA_COMMENT)
                    ),
                    &[],
                )
                .await
                .map(|_| ())
                .map_err(|e| anyhow!("cannot mark schema {schema} complete: {}", db_message(&e)))
        }
        .await;
        if let Err(e) = finish {
            let cleanup = self.drop_schema_and_role(&client, &schema).await;
            self.forget_secrets(&schema)?;
            // The migration's scratch config dir.
            let _ = std::fs::remove_dir_all(langflow::instance_dir(&self.config, &schema));
            return Err(match cleanup {
                Ok(()) => e.context(format!(
                    "schema-add {prefix} failed; nothing was left behind"
                )),
                Err(c) => e.context(format!(
                    "schema-add {prefix} failed and cleaning up schema {schema} failed too ({c:#})"
                )),
            });
        }
        Ok(TenantSchema {
            revision: alembic_revision(&client, &schema).await?,
            users: 1,
            prefix: prefix.to_string(),
            schema,
        })
    }

    async fn create_role_and_schema(
        &self,
        client: &Client,
        schema: &str,
        role_password: &str,
    ) -> Result<()> {
        let ident = quote_ident(schema);
        let database = quote_ident(&self.admin.database);
        // One transaction: either all of it exists afterwards or none of it.
        client
            .batch_execute(&format!(
                "BEGIN;
                 SELECT pg_advisory_xact_lock({TENANT_DDL_LOCK});
                 CREATE ROLE {ident} LOGIN PASSWORD {password} NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT;
                 CREATE SCHEMA {ident} AUTHORIZATION {ident};
                 COMMENT ON SCHEMA {ident} IS {comment};
                 ALTER ROLE {ident} SET search_path = {ident};
                 REVOKE ALL ON SCHEMA public FROM PUBLIC;
                 REVOKE ALL ON DATABASE {database} FROM PUBLIC;
                 GRANT CONNECT, TEMPORARY ON DATABASE {database} TO {ident};
                 COMMIT;",
                password = quote_literal(role_password),
                comment = quote_literal(PROVISIONING_COMMENT),
            ))
            .await
            // On failure the open transaction dies with the connection: nothing is left.
            .map_err(|e| anyhow!("{}", db_message(&e)))
    }

    async fn drop_schema_and_role(&self, client: &Client, schema: &str) -> Result<()> {
        let ident = quote_ident(schema);
        client
            .batch_execute(&format!(
                "SELECT pg_advisory_xact_lock({TENANT_DDL_LOCK});
                 SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = {name};
                 DROP SCHEMA IF EXISTS {ident} CASCADE;
                 DROP OWNED BY {ident} CASCADE;
                 DROP ROLE IF EXISTS {ident};",
                name = quote_literal(schema),
            ))
            .await
            .or_else(|e| {
                // DROP OWNED fails when the role is already gone; the rest then succeeded or
                // there was nothing to drop.
                let missing_role = e.as_db_error().is_some_and(|d| {
                    d.code() == &tokio_postgres::error::SqlState::UNDEFINED_OBJECT
                });
                if missing_role {
                    Ok(())
                } else {
                    Err(e)
                }
            })
            .with_context(|| format!("cannot drop schema {schema}"))
    }

    /// Removes what `schema-add`s cut off half-way left behind (schemas still marked
    /// [`PROVISIONING_COMMENT`], their roles and secrets); returns their names. Only safe while no
    /// `schema-add` runs: under the state lock, before any is started.
    pub async fn remove_unfinished(&self) -> Result<Vec<String>> {
        let client = self.connect().await?;
        let mut removed = Vec::new();
        for schema in schemas_with_comment(&client, PROVISIONING_COMMENT).await? {
            if naming::parse_schema_id(&schema).is_err() {
                continue;
            }
            self.drop_schema_and_role(&client, &schema).await?;
            self.forget_secrets(&schema)?;
            let _ = std::fs::remove_dir_all(langflow::instance_dir(&self.config, &schema));
            removed.push(schema);
        }
        Ok(removed)
    }

    /// Schemas still marked [`PROVISIONING_COMMENT`]: `schema-add`s cut off half-way.
    pub async fn unfinished_schemas(&self) -> Result<Vec<String>> {
        schemas_with_comment(&self.connect().await?, PROVISIONING_COMMENT).await
    }

    fn forget_secrets(&self, schema: &str) -> Result<()> {
        self.update_secrets(|all| all.tenants.remove(schema).is_some())
    }

    /// Removes a tenant schema, its role, its users and data, and its secrets. Its Langflow
    /// instance must be stopped first (its connections are terminated).
    pub async fn schema_rm(&self, schema: &str) -> Result<()> {
        naming::parse_schema_id(schema)?;
        let _lock = self.lock()?;
        let client = self.connect().await?;
        require_tenant_schema(&client, schema).await?;
        self.drop_schema_and_role(&client, schema).await?;
        self.forget_secrets(schema)
    }

    /// Checks that `schema` is an existing tenant schema and returns its prefix.
    pub async fn require_tenant(&self, schema: &str) -> Result<String> {
        let prefix = naming::parse_schema_id(schema)?.to_string();
        let client = self.connect().await?;
        require_tenant_schema(&client, schema).await?;
        Ok(prefix)
    }

    async fn require_schema(&self, client: &Client, schema: &str) -> Result<()> {
        require_tenant_schema(client, schema).await?;
        if !table_exists(client, schema, "user").await? {
            bail!("schema {schema} has no Langflow tables; remove it with `cargo xtask tenant schema-rm --schema {schema} --yes` and add it again");
        }
        Ok(())
    }
}

/// Inserts a Langflow user (bcrypt hash) into a tenant's `user` table; fails when the username
/// exists (case-insensitively, as Langflow compares).
async fn insert_user(
    client: &Client,
    table: &str,
    schema: &str,
    username: &str,
    password: &str,
    superuser: bool,
) -> Result<()> {
    let hash = hash_password(password).await?;
    // The existence check and the insert race only with another tenantmgr; Langflow's own
    // unique index on username is the final guard.
    if find_user(client, table, username).await?.is_some() {
        bail!("user {username:?} already exists in {schema} (usernames are case-insensitive); use `user-reset` to change its password");
    }
    client
        .execute(
            &format!(
                "INSERT INTO {table} (id, username, password, is_active, is_superuser, create_at, updated_at) \
                 VALUES ($1, $2, $3, true, $4, now(), now())"
            ),
            &[&uuid::Uuid::new_v4(), &username, &hash, &superuser],
        )
        .await
        .map_err(|e| anyhow!("cannot add user {username:?} to {schema}: {}", db_message(&e)))?;
    Ok(())
}

/// Names of the schemas whose comment is `comment`, sorted.
async fn schemas_with_comment(client: &Client, comment: &str) -> Result<Vec<String>> {
    Ok(client
        .query(
            "SELECT n.nspname FROM pg_namespace n \
             WHERE obj_description(n.oid, 'pg_namespace') = $1 ORDER BY n.nspname",
            &[&comment],
        )
        .await?
        .into_iter()
        .map(|row| row.get(0))
        .collect())
}

async fn require_tenant_schema(client: &Client, schema: &str) -> Result<()> {
    let exists = client
        .query_opt(
            "SELECT 1 FROM pg_namespace n WHERE n.nspname = $1 \
             AND obj_description(n.oid, 'pg_namespace') = $2",
            &[&schema, &SCHEMA_COMMENT],
        )
        .await?
        .is_some();
    if !exists {
        bail!("unknown schema {schema}; see `cargo xtask tenant schema-list`");
    }
    Ok(())
}

impl Tenancy {
    /// Common start of user-add / user-reset: checked input, a connection, the tenant's quoted
    /// user table, and the password to set (generated when none is given).
    async fn user_change(
        &self,
        schema: &str,
        username: &str,
        password: Option<&str>,
    ) -> Result<(Client, String, String, bool)> {
        naming::check_user_input(schema, username, password)?;
        let (password, generated) = choose_password(password)?;
        let client = self.connect().await?;
        self.require_schema(&client, schema).await?;
        let table = format!("{}.\"user\"", quote_ident(schema));
        Ok((client, table, password, generated))
    }

    /// Adds a Langflow user to a tenant (active; superuser when asked). Without a password one is
    /// generated (16 characters, CSPRNG) and returned once.
    pub async fn user_add(
        &self,
        schema: &str,
        username: &str,
        password: Option<&str>,
        superuser: bool,
    ) -> Result<IssuedCredentials> {
        let (client, table, password, generated) =
            self.user_change(schema, username, password).await?;
        insert_user(&client, &table, schema, username, &password, superuser).await?;
        Ok(IssuedCredentials {
            schema: schema.to_string(),
            username: username.to_string(),
            password,
            generated,
        })
    }

    /// Whether `username` exists in the tenant (case-insensitively, as Langflow compares).
    pub async fn user_exists(&self, schema: &str, username: &str) -> Result<bool> {
        naming::parse_schema_id(schema)?;
        let client = self.connect().await?;
        self.require_schema(&client, schema).await?;
        let table = format!("{}.\"user\"", quote_ident(schema));
        Ok(find_user(&client, &table, username).await?.is_some())
    }

    /// Sets a new password for a user (generated when none is given); the old one stops working.
    pub async fn user_reset(
        &self,
        schema: &str,
        username: &str,
        password: Option<&str>,
    ) -> Result<IssuedCredentials> {
        let (client, table, password, generated) =
            self.user_change(schema, username, password).await?;
        let Some(stored_name) = find_user(&client, &table, username).await? else {
            bail!("unknown user {username:?} in {schema}; see `cargo xtask tenant user-list --schema {schema}`");
        };
        let hash = hash_password(&password).await?;
        client
            .execute(
                &format!(
                    "UPDATE {table} SET password = $1, updated_at = now() WHERE username = $2"
                ),
                &[&hash, &stored_name],
            )
            .await?;
        Ok(IssuedCredentials {
            schema: schema.to_string(),
            username: stored_name,
            password,
            generated,
        })
    }

    /// The users of a tenant.
    pub async fn user_list(&self, schema: &str) -> Result<Vec<TenantUser>> {
        naming::parse_schema_id(schema)?;
        let client = self.connect().await?;
        self.require_schema(&client, schema).await?;
        let rows = client
            .query(
                &format!(
                    "SELECT username, is_active, is_superuser, \
                     to_char(create_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), \
                     to_char(last_login_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') \
                     FROM {}.\"user\" ORDER BY lower(username)",
                    quote_ident(schema)
                ),
                &[],
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| TenantUser {
                username: row.get(0),
                active: row.get(1),
                superuser: row.get(2),
                created_at: row.get::<_, Option<String>>(3).unwrap_or_default(),
                last_login_at: row.get(4),
            })
            .collect())
    }
}

fn choose_password(given: Option<&str>) -> Result<(String, bool)> {
    match given {
        Some(password) => {
            naming::validate_password(password)?;
            Ok((password.to_string(), false))
        }
        None => Ok((secret::password(naming::GENERATED_PASSWORD_LEN), true)),
    }
}

/// bcrypt `$2b$12$` hash, computed off the async threads (it takes ~0.2 s by design).
pub async fn hash_password(password: &str) -> Result<String> {
    let password = password.to_string();
    tokio::task::spawn_blocking(move || bcrypt::hash(password, BCRYPT_COST))
        .await?
        .context("bcrypt failed")
}

async fn find_user(client: &Client, table: &str, username: &str) -> Result<Option<String>> {
    Ok(client
        .query_opt(
            &format!("SELECT username FROM {table} WHERE lower(username) = lower($1)"),
            &[&username],
        )
        .await?
        .map(|row| row.get(0)))
}

async fn table_exists(client: &Client, schema: &str, table: &str) -> Result<bool> {
    Ok(client
        .query_opt(
            "SELECT 1 FROM information_schema.tables WHERE table_schema = $1 AND table_name = $2",
            &[&schema, &table],
        )
        .await?
        .is_some())
}

async fn count_users(client: &Client, schema: &str) -> Result<i64> {
    if !table_exists(client, schema, "user").await? {
        return Ok(0);
    }
    Ok(client
        .query_one(
            &format!("SELECT count(*) FROM {}.\"user\"", quote_ident(schema)),
            &[],
        )
        .await?
        .get(0))
}

async fn alembic_revision(client: &Client, schema: &str) -> Result<Option<String>> {
    if !table_exists(client, schema, "alembic_version").await? {
        return Ok(None);
    }
    Ok(client
        .query_opt(
            &format!(
                "SELECT version_num FROM {}.alembic_version LIMIT 1",
                quote_ident(schema)
            ),
            &[],
        )
        .await?
        .map(|row| row.get(0)))
}

fn db_message(error: &tokio_postgres::Error) -> String {
    error
        .as_db_error()
        .map_or_else(|| error.to_string(), |d| d.message().to_string())
}

/// What tenant import (the `bundle` module) needs beyond schema-add: an empty tenant under the same
/// contract (role, schema, grants, secrets) for a dump to be restored into as the tenant's own
/// role, its removal when anything later fails, the migration to head, and the operator user.
impl Tenancy {
    /// Takes the state lock (unless the caller holds it) for a multi-step tenant change.
    pub fn lock_for_change(&self) -> Result<Option<nix::fcntl::Flock<std::fs::File>>> {
        self.lock()
    }

    /// A new schema id for `prefix` (not created).
    pub fn new_schema_id(prefix: &str) -> Result<String> {
        naming::validate_prefix(prefix)?;
        Ok(naming::schema_id(
            prefix,
            &secret::hex(naming::SCHEMA_SUFFIX_LEN / 2),
        ))
    }

    /// Creates the empty tenant `schema` of `prefix` (no Langflow tables) with fresh secrets, the
    /// secret key given (`--secret-key-from`) or a new one. The caller holds
    /// [`Self::lock_for_change`].
    pub async fn create_empty(
        &self,
        prefix: &str,
        schema: &str,
        secret_key: Option<String>,
    ) -> Result<()> {
        naming::validate_prefix(prefix)?;
        if naming::parse_schema_id(schema)? != prefix {
            bail!("schema {schema} does not belong to prefix {prefix}");
        }
        if let Some(existing) = self.find_prefix(prefix).await? {
            bail!(
                "prefix '{prefix}' already exists as schema {}; import under another prefix with \
                 --prefix NEW, or remove it with `cargo xtask tenant schema-rm --schema {} --yes`",
                existing.schema,
                existing.schema
            );
        }
        let schema = schema.to_string();
        let secrets = TenantSecrets {
            role_password: secret::password(32),
            secret_key: secret_key.unwrap_or_else(secret::urlsafe_key),
            operator_password: secret::password(32),
        };
        let client = self.connect().await?;
        self.create_role_and_schema(&client, &schema, &secrets.role_password)
            .await
            .with_context(|| format!("cannot create schema {schema}"))?;
        if let Err(e) = self.update_secrets(|all| {
            all.tenants.insert(schema.clone(), secrets.clone());
            true
        }) {
            let _ = self.drop_schema_and_role(&client, &schema).await;
            return Err(e);
        }
        Ok(())
    }

    /// Removes a tenant made by [`Self::create_empty`] and whatever was restored into it.
    pub async fn discard(&self, schema: &str) -> Result<()> {
        let client = self.connect().await?;
        let dropped = self.drop_schema_and_role(&client, schema).await;
        self.forget_secrets(schema)?;
        dropped
    }

    /// Brings a tenant's schema to Langflow's Alembic head with Langflow's own migrations, run as
    /// the tenant's role.
    pub async fn migrate(&self, schema: &str) -> Result<()> {
        let target = self.tenant_target(schema)?;
        migrate::upgrade_to_head(&self.config, &self.migrator, &target).await
    }

    /// Marks a tenant made by [`Self::create_empty`] as complete: from now on it is listed and
    /// served (until then a cut-off import is never taken for a tenant).
    pub async fn mark_complete(&self, schema: &str) -> Result<()> {
        self.connect()
            .await?
            .batch_execute(&format!(
                "COMMENT ON SCHEMA {} IS {}",
                quote_ident(schema),
                quote_literal(SCHEMA_COMMENT)
            ))
            .await
            .map_err(|e| anyhow!("cannot mark schema {schema} complete: {}", db_message(&e)))
    }

    /// Makes the harness's operator superuser of a tenant hold the password in `secrets.json`
    /// (reset when the user exists, as after an import; created otherwise).
    pub async fn ensure_operator(&self, schema: &str) -> Result<()> {
        let password = self.tenant_secrets(schema)?.operator_password;
        if self.user_exists(schema, OPERATOR_USERNAME).await? {
            self.user_reset(schema, OPERATOR_USERNAME, Some(&password))
                .await
                .map(|_| ())
        } else {
            self.user_add(schema, OPERATOR_USERNAME, Some(&password), true)
                .await
                .map(|_| ())
        }
    }

    /// Every schema of the database (names an import must never touch, its own excepted).
    pub async fn all_schemas(&self) -> Result<Vec<String>> {
        let client = self.connect().await?;
        let rows = client
            .query("SELECT nspname FROM pg_namespace", &[])
            .await?;
        Ok(rows.into_iter().map(|r| r.get(0)).collect())
    }
}
