//! The domain rules of the read side, pure: a subject's stored events in,
//! facts, summaries, indicators and returns out. No IO: this crate depends
//! on neither sqlx nor tokio (a check in `tests/tests/workspace.rs` holds it
//! to that), so every rule here is tested without a database.
//!
//! # Layout
//!
//! - [`facts`]: effective histories (corrections and retractions applied)
//!   and the folds from a subject's history to caseload and indicator facts.
//! - [`summary`]: one-line chronology summaries from codes only.
//! - [`indicators`]: the indicator arithmetic over a council's facts.
//! - [`cin`]: the CIN census: a child's history as its census record, and the XML message.
//! - [`annex_a`]: Ofsted's Annex A lists from a child's history.
//! - [`quality`]: data-quality flags, the DfE rules a child's history breaks.
//! - [`identifiers`]: the NHS numbers in a child's history, opened with its key.
//! - [`csv`]: CSV cells, quoted and with formulas defused, for every CSV written.
//! - [`chronology`]: a chronology line as the read models give it; [`format`]: the chronology as CSV and Markdown.
//! - [`anonymise`]: the anonymised chronology for publication, opening each personal field with the child's key.
//!
//! `projections` writes what these folds yield and reads it back; the
//! query role serves it.

pub mod alerts;
pub mod annex_a;
pub mod anonymise;
pub mod certified;
pub mod chronology;
pub mod cin;
pub mod csv;
pub mod facts;
pub mod format;
pub mod identifiers;
pub mod indicators;
pub mod involvement;
pub mod module5;
pub mod narrative;
pub mod plo;
pub mod quality;
pub mod summary;
pub mod tally;
