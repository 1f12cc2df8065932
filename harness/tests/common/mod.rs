//! Helpers shared by the integration tests.

use harness::stack::Stack;

/// A stack that is stopped (volumes dropped) when the test ends, also when an assertion fails,
/// so a failing test leaves no processes behind.
pub struct Running(pub Stack);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.down(true);
    }
}

impl std::ops::Deref for Running {
    type Target = Stack;
    fn deref(&self) -> &Stack {
        &self.0
    }
}
