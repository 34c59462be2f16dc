//! Exit codes, documented in the README ("Exit codes").

/// Success; for `plan --detailed-exitcode` and `drift`: nothing to change.
pub const OK: u8 = 0;
/// An error: bad input, a failed operation, a refused apply.
pub const ERROR: u8 = 1;
/// Changes present (`plan --detailed-exitcode`), or drift found (`drift`).
pub const CHANGES: u8 = 2;
/// Interrupted (Ctrl-C): operations in flight finished, state saved.
pub const INTERRUPTED: u8 = 130;
