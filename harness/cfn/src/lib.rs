//! langflow-infra harness, **CloudFormation** layer: the template model (YAML tags, intrinsics),
//! cross-stack wiring, parameters, cfn-guard rules and cfn-lint, the `k8s/` IRSA checks, and the
//! Fargate task definition with the image contract it implies.
//!
//! Depends on `harness-core` only; may not depend on Docker, Postgres or the AWS SDK (what needs
//! an emulator — the rehearsal — lives in `harness-stack`).

pub mod deploy;
pub mod taskdef;
pub mod validate;
