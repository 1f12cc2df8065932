//! langflow-infra harness, **stack** layer: WHAT runs — the services (Postgres, the AWS emulator,
//! Langflow and its fork server), tenancy (tenantmgr), the gateway (the ALB), the identity server
//! and credential scenarios — and the stack's lifecycle (up, repair, supervisor, down, image
//! mode), plus the rehearsal of the templates in the emulator.
//!
//! Depends on `harness-core`, `harness-cfn` and `harness-runtime`; may not depend on the suites
//! (`harness`: e2e, browser, chaos, bench, bundle, env, compose).

pub mod credentials;
pub mod gateway;
pub mod gateway_tls;
pub mod rehearse;
pub mod services;
pub mod stack;
pub mod tenancy;
