//! Python programs of the harness that more than one layer needs.

/// The Langflow fork server (`harness/python/langflow_forkserver.py`): run natively by the stack
/// and copied into the reference multi-tenant image by the image build.
pub const FORKSERVER_SCRIPT: &str = include_str!("../../python/langflow_forkserver.py");
