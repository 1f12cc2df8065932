//! langflow-infra harness, **runtime** layer: WHERE services run — child processes on the host
//! (spawned, or forked by the Langflow fork server over its socket protocol) or containers on the
//! run's Docker network — and the images those containers run (`docker::images`).
//!
//! Depends on `harness-core` only; may not know which services exist (Postgres, the emulator,
//! Langflow are `harness-stack`'s).

pub mod docker;
pub mod runtime;
