//! Each role, started from its settings and run until its shutdown future
//! resolves. `safeguard serve` runs any set of them in one process; the
//! tests start them in-process the same way.

pub mod gateway;
pub mod projector;
pub mod query;
