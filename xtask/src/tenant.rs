//! `cargo xtask tenant ...`: tenantmgr, the tenant schemas and their Langflow users, and tenant
//! export / import (`harness::bundle`).

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;
use harness::bundle;
use harness::report;
use harness::stack::image::ImageMode;
use harness::stack::Stack;
use harness::tenancy::{naming, IssuedCredentials, Tenancy};

use crate::print_json;

/// Which user of which tenant, and optionally the password to set.
#[derive(clap::Args)]
pub struct UserArgs {
    /// Schema id (see schema-list).
    #[arg(long)]
    schema: String,
    /// Login name (unique per tenant, case-insensitive).
    #[arg(long)]
    username: String,
    /// Password to set; generated (16 characters) and shown once when absent.
    #[arg(long)]
    password: Option<String>,
}

/// The `tenant` subcommands.
#[derive(Subcommand)]
pub enum TenantCommand {
    /// Create a tenant: schema `<prefix>-<6 hex>`, its role, Langflow's tables; starts its
    /// instance when the stack runs.
    SchemaAdd {
        /// Tenant prefix: 1-50 letters, digits, '_' or '-' (served at /tenant/<prefix>/).
        #[arg(long)]
        prefix: String,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List tenant schemas.
    SchemaList {
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a tenant: its instance, schema, role, users and data.
    SchemaRm {
        /// Schema id (see schema-list).
        #[arg(long)]
        schema: String,
        /// Confirm the removal (it cannot be undone).
        #[arg(long)]
        yes: bool,
    },
    /// Add a Langflow user to a tenant; without --password one is generated and shown once.
    UserAdd {
        #[command(flatten)]
        user: UserArgs,
        /// Make the user a Langflow superuser.
        #[arg(long)]
        superuser: bool,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Set a new password for a user; without --password one is generated and shown once.
    UserReset {
        #[command(flatten)]
        user: UserArgs,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Export a tenant (schema data + Alembic revision, S3 objects, manifest) to a .tar.zst
    /// bundle. No secrets: password hashes travel, the instance's secret key does not.
    Export {
        /// Schema id (see schema-list).
        #[arg(long)]
        schema: String,
        /// Bundle file to write (e.g. acme.tar.zst).
        #[arg(short, long)]
        output: std::path::PathBuf,
        /// Also write the instance's secret key to this file (0600), for `import
        /// --secret-key-from` (encrypted variables then decrypt in the copy).
        #[arg(long)]
        secret_key_out: Option<std::path::PathBuf>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Import a bundle, or a plain `pg_dump -n '<schema>'` of a production tenant, as a new
    /// tenant (own role, schema, grants) and start its instance.
    Import {
        /// A bundle from `tenant export`, or a plain SQL dump of one tenant schema.
        input: std::path::PathBuf,
        /// Prefix of the new tenant (default: the bundle's or the dump schema's prefix).
        #[arg(long)]
        prefix: Option<String>,
        /// For a plain dump: the tenant's S3 objects, a directory or s3://BUCKET/PREFIX on the
        /// emulator (keys below it become `tenants/<new schema>/<key>`).
        #[arg(long)]
        objects: Option<String>,
        /// A file with the source instance's LANGFLOW_SECRET_KEY; without it a new key is made
        /// and credential variables encrypted by the source cannot be decrypted.
        #[arg(long)]
        secret_key_from: Option<std::path::PathBuf>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List a tenant's users.
    UserList {
        /// Schema id (see schema-list).
        #[arg(long)]
        schema: String,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// In image mode the image's own tenant manager answers (inside a task, as `docker exec` / ECS
/// Exec would run it): its arguments for `command`, or `None` for what it does not do.
fn tenantmgr_args(command: &TenantCommand) -> Option<Vec<String>> {
    let user = |verb: &str, user: &UserArgs, extra: &[&str], json: bool| {
        let mut args = vec![
            verb.to_string(),
            "--schema".into(),
            user.schema.clone(),
            "--username".into(),
            user.username.clone(),
        ];
        if let Some(password) = &user.password {
            args.extend(["--password".into(), password.clone()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        if json {
            args.push("--json".into());
        }
        args
    };
    let json_flag = |json: bool| json.then(|| "--json".to_string());
    Some(match command {
        TenantCommand::SchemaAdd { prefix, json } => ["schema-add", "--prefix", prefix]
            .map(String::from)
            .into_iter()
            .chain(json_flag(*json))
            .collect(),
        TenantCommand::SchemaList { json } => std::iter::once("schema-list".to_string())
            .chain(json_flag(*json))
            .collect(),
        TenantCommand::UserAdd {
            user: u,
            superuser,
            json,
        } => user(
            "user-add",
            u,
            if *superuser { &["--superuser"] } else { &[] },
            *json,
        ),
        TenantCommand::UserReset { user: u, json } => user("user-reset", u, &[], *json),
        _ => return None,
    })
}

/// Runs a `tenant` subcommand against the running stack.
pub async fn run(stack: &Stack, command: TenantCommand) -> Result<ExitCode> {
    if ImageMode::read(&stack.config().state_dir)?.is_some() {
        let Some(args) = tenantmgr_args(&command) else {
            anyhow::bail!("the stack runs the deployed image (`up --image`): tenants are managed by the image's tenant manager, which has schema-add, schema-list, user-add and user-reset only");
        };
        let run = stack.tenantmgr(&args)?;
        print!("{}", run.stdout);
        eprint!("{}", run.stderr);
        return Ok(if run.success {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    let tenancy = || Tenancy::for_running_stack(stack.config(), stack.files());
    match command {
        TenantCommand::SchemaAdd { prefix, json } => {
            // Validate before touching anything, so bad input fails fast and alone.
            naming::validate_prefix(&prefix)?;
            let schema = tenancy()?.schema_add(&prefix).await?;
            let endpoint = stack.attach_tenant(&schema).await?;
            if json {
                print_json(&serde_json::json!({"schema": schema, "endpoint": endpoint}))?;
            } else {
                println!("{}", report::schemas_table(std::slice::from_ref(&schema)));
                match endpoint {
                    Some(endpoint) => println!("serving at {}", endpoint.url),
                    None => println!("the stack's gateway is not running; `cargo xtask up` starts this tenant's instance"),
                }
                println!(
                    "add a user: cargo xtask tenant user-add --schema {} --username NAME",
                    schema.schema
                );
            }
        }
        TenantCommand::SchemaList { json } => {
            let schemas = tenancy()?.schema_list().await?;
            if json {
                print_json(&schemas)?;
            } else {
                println!("{}", report::schemas_table(&schemas));
            }
        }
        TenantCommand::SchemaRm { schema, yes } => {
            naming::parse_schema_id(&schema)?;
            if !yes {
                anyhow::bail!(
                    "schema-rm deletes schema {schema} with all its users and flows; add --yes to confirm"
                );
            }
            let tenancy = tenancy()?;
            let prefix = tenancy.require_tenant(&schema).await?;
            stack.detach_tenant(&prefix)?;
            tenancy.schema_rm(&schema).await?;
            println!("removed tenant {prefix} (schema {schema}, its role, users and data)");
        }
        TenantCommand::UserAdd {
            user,
            superuser,
            json,
        } => {
            let UserArgs {
                schema,
                username,
                password,
            } = user;
            naming::check_user_input(&schema, &username, password.as_deref())?;
            let issued = tenancy()?
                .user_add(&schema, &username, password.as_deref(), superuser)
                .await?;
            print_credentials(&issued, json)?;
        }
        TenantCommand::UserReset { user, json } => {
            let UserArgs {
                schema,
                username,
                password,
            } = user;
            naming::check_user_input(&schema, &username, password.as_deref())?;
            let issued = tenancy()?
                .user_reset(&schema, &username, password.as_deref())
                .await?;
            print_credentials(&issued, json)?;
        }
        TenantCommand::Export {
            schema,
            output,
            secret_key_out,
            json,
        } => {
            naming::parse_schema_id(&schema)?;
            let report = bundle::export(stack, &schema, &output, secret_key_out.as_deref()).await?;
            if json {
                print_json(&report)?;
            } else {
                println!("{}", bundle::export_table(&report));
                println!(
                    "import it with: cargo xtask tenant import {} --prefix {}-repro",
                    report.path.display(),
                    report.prefix
                );
            }
        }
        TenantCommand::Import {
            input,
            prefix,
            objects,
            secret_key_from,
            json,
        } => {
            let options = bundle::ImportOptions {
                input,
                prefix,
                objects,
                secret_key_from,
            };
            let report = bundle::import(stack, &options).await?;
            if json {
                print_json(&report)?;
            } else {
                println!("{}", bundle::import_table(&report));
                println!(
                    "users log in with their old passwords; a shell for it: eval \"$(cargo xtask env --tenant {})\"",
                    report.prefix
                );
            }
        }
        TenantCommand::UserList { schema, json } => {
            naming::parse_schema_id(&schema)?;
            let users = tenancy()?.user_list(&schema).await?;
            if json {
                print_json(&users)?;
            } else {
                println!("{}", report::users_table(&users));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_credentials(issued: &IssuedCredentials, json: bool) -> Result<()> {
    if json {
        print_json(issued)
    } else {
        println!("{}", report::credentials_table(issued));
        Ok(())
    }
}
