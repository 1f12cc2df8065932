//! The suites of this package are its test targets; this library is empty.
