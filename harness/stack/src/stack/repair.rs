//! Repair, as ECS replaces a stopped task: only the services of a run that are down are started
//! again, on the ports they had (so routes, URLs and the other services' settings stay valid);
//! everything still running is left alone. Used by `up` on a partly crashed run and by the
//! supervisor, which restarts crashed services with back-off.
//!
//! What a restarted emulator loses (it keeps IAM in memory; S3 objects are on disk) is
//! provisioned again: the bucket by its own start, the identities right after it.

use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};

use super::{aws_port, service_order, Stack, STOP_GRACE};
use crate::credentials::IDENTITY_SERVICE;
use crate::services::langflow;
use harness_core::state::RunState;

impl Stack {
    /// Restarts the services named in `crashed` of the recorded run `previous`, lowest tier
    /// first, each on its recorded port; records the restart count and why each one had stopped.
    /// Returns the seconds until each was ready again.
    pub(super) async fn repair(
        &self,
        previous: RunState,
        crashed: &[String],
    ) -> Result<Vec<(String, f64)>> {
        let mut order: Vec<(u8, usize, String)> = crashed
            .iter()
            .filter_map(|name| {
                let record = previous.services.get(name)?;
                Some((record.tier, service_order(name), name.clone()))
            })
            .collect();
        order.sort();
        let state = Arc::new(Mutex::new(previous.clone()));
        let mut ready = Vec::new();
        let mut emulator_restarted = false;
        for (_, _, name) in order {
            let record = previous.services[&name].clone();
            let reason = self
                .runtime
                .exit_reason(&record.process)
                .unwrap_or_else(|| "exited".into());
            // Whatever is left of it (its process group's children, an exited container).
            let _ = self.runtime.stop(&record.process, STOP_GRACE);
            // Counted before it starts, so the restart shows as soon as the new one is recorded.
            {
                let mut current = state.lock().expect("state lock");
                if let Some(entry) = current.services.get_mut(&name) {
                    entry.restarts = record.restarts + 1;
                    entry.last_exit = Some(reason);
                }
            }
            let started = match name.as_str() {
                "postgres" => self.start_postgres(&state, Some(record.port)).await,
                "aws" => {
                    emulator_restarted = true;
                    self.start_aws(&state, Some(record.port)).await
                }
                IDENTITY_SERVICE => {
                    let aws = aws_port(&state)?;
                    self.start_identity(&state, aws, Some(record.port)).await
                }
                super::GATEWAY_SERVICE => self.start_gateway(&state, record.port).await,
                super::supervisor::SUPERVISOR_SERVICE => self.start_supervisor(&state).await,
                super::dashboard::DASHBOARD_SERVICE => {
                    self.start_dashboard(&state, Some(record.port)).await
                }
                crate::services::forkserver::SERVICE => {
                    let launcher =
                        langflow::Launcher::prepare(&self.config, self.runtime.placement()).await?;
                    self.start_forkserver(&state, &launcher).await
                }
                task if super::image::is_task(task) => self.restart_task(&state, task).await,
                instance => self.restart_instance(&state, instance, record.port).await,
            }
            .with_context(|| format!("cannot restart {name}"))?;
            ready.push(started);
        }
        let snapshot = state.lock().expect("state lock").clone();
        if emulator_restarted && !crashed.iter().any(|n| n == IDENTITY_SERVICE) {
            if let (Some(aws), Some(identity)) = (
                snapshot.services.get("aws"),
                snapshot.services.get(IDENTITY_SERVICE),
            ) {
                self.provision_identities(aws.port, identity.port).await?;
            }
        }
        Ok(ready)
    }

    /// Restarts service `name` of the running stack now, as a person asks for it (the
    /// dashboard's restart action): under the state lock (refused at once while someone else holds
    /// it), it is stopped and started again on its
    /// port like a repair (counted as a restart, the stop reason recorded). The supervisor and
    /// the dashboard are refused (the one would race the restart, the other is the caller).
    /// Returns the seconds until it was ready again.
    pub async fn restart_service(&self, name: &str) -> Result<f64> {
        if name == super::supervisor::SUPERVISOR_SERVICE
            || name == super::dashboard::DASHBOARD_SERVICE
        {
            anyhow::bail!(
                "{name} cannot be restarted from the dashboard; `cargo xtask down` and `up` restart it"
            );
        }
        let Some(_lock) = self.files.try_lock()? else {
            anyhow::bail!(
                "the stack is being changed right now (`up`, `down`, a tenant command or the supervisor's repair); try again in a moment"
            );
        };
        let state = self.running_state()?;
        crate::services::check_service_name(name, state.services.keys().map(String::as_str))?;
        let record = state.services[name].clone();
        self.runtime.stop(&record.process, STOP_GRACE)?;
        let ready = self.repair(state, &[name.to_string()]).await?;
        Ok(ready.iter().map(|(_, secs)| secs).sum())
    }

    /// Starts the instance `name` (`langflow-<prefix>`) of a tenant again on `port`.
    async fn restart_instance(
        &self,
        state: &Arc<Mutex<RunState>>,
        name: &str,
        port: u16,
    ) -> Result<(String, f64)> {
        let prefix = langflow::prefix_of_service(name)
            .with_context(|| format!("{name} is not a tenant instance"))?;
        let snapshot = state.lock().expect("state lock").clone();
        let tenancy = self.tenancy_in_run(&snapshot)?;
        let schema = tenancy
            .schema_list()
            .await?
            .into_iter()
            .find(|s| s.prefix == prefix)
            .with_context(|| format!("tenant {prefix} no longer exists"))?;
        let launcher = langflow::Launcher::prepare(&self.config, self.runtime.placement()).await?;
        let launcher = self.instance_launcher(state, launcher);
        self.start_instance(state, &tenancy, &launcher, &schema, port)
            .await
    }
}
