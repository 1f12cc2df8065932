//! langflow-infra harness: brings up a local emulation of the multi-tenant Langflow stack on AWS
//! (Postgres, an AWS emulator, per-tenant Langflow instances behind an ALB-like gateway) and
//! checks it. The `xtask` crate is a thin command line over this library.

pub mod bench;
pub mod browser;
pub mod bundle;
pub mod chaos;
pub mod compose;
pub mod config;
pub mod credentials;
pub mod devenv;
pub mod docker;
pub mod e2e;
pub mod gateway;
pub mod gateway_bench;
pub mod gateway_tls;
pub mod net;
pub mod progress;
pub mod report;
pub mod runtime;
pub mod secret;
pub mod services;
pub mod sql;
pub mod stack;
pub mod state;
pub mod taskdef;
pub mod tenancy;
pub mod validate;
pub mod venv;
