//! langflow-infra harness, **suites** layer: brings up a local emulation of the multi-tenant
//! Langflow stack on AWS and checks it — the e2e, browser, chaos and bench suites, tenant bundles,
//! the developer environment and compose rendering. The `xtask` crate is a thin command line over
//! this library.
//!
//! The layers below are re-exported under their module names, so `harness::config`,
//! `harness::validate`, `harness::runtime`, `harness::stack` … name one API:
//! core (`harness-core`) → cfn (`harness-cfn`) → runtime (`harness-runtime`) → stack
//! (`harness-stack`) → suites (this crate) → `xtask`. Each depends only on the layers before it.

pub use harness_cfn::{deploy, taskdef, validate};
pub use harness_core::{assets, config, net, process, progress, routing, secret, sql, state};
pub use harness_core::{run_reports, tables, venv};
pub use harness_runtime::{docker, runtime};
pub use harness_stack::{credentials, gateway, gateway_tls, rehearse, services, stack, tenancy};

pub mod bench;
pub mod browser;
pub mod bundle;
pub mod chaos;
pub mod compose;
pub mod dashboard;
pub mod dashboard_bench;
pub mod devenv;
pub mod e2e;
pub mod gateway_bench;
pub mod report;
