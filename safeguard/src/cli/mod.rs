//! The operator commands, one module each.
//!
//! - [`token`]: `safeguard token` and `safeguard nkey`.
//! - [`returns`]: `safeguard return`, through the query API.
//! - [`import`]: `safeguard import`, bulk NDJSON through the gateway.
//! - [`seed`]: `safeguard seed`.
//! - [`chronology`]: `safeguard chronology`, through the query API.
//! - [`audit`]: `safeguard verify` and `safeguard erase`.
//! - [`parked`]: `safeguard parked` and `safeguard parked retry`.
//! - [`backup`]: `safeguard backup` and `safeguard restore`.
//! - [`streams`]: `safeguard streams`, the operator making the streams and buckets.
//! - [`client`]: the one HTTP client of the commands that call the roles.

pub mod audit;
pub mod backup;
pub mod chronology;
pub mod client;
pub mod export_check;
pub mod import;
pub mod parked;
pub mod returns;
pub mod seed;
pub mod streams;
pub mod token;
