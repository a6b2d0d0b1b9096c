//! Certified exports: a chronology a court can file and anyone holding the
//! public keys can check, without the backbone.
//!
//! # What an export carries
//!
//! - A **certificate**: which record (`full` or `anonymised`), in which
//!   format, of which subject, how many entries, the subject's last sequence
//!   it covers, the read models' stream position when it was made, and the
//!   latest signed **checkpoint** at or before that position with a Merkle
//!   **head proof** that the subject's history ended at sequence N with hash
//!   H when the checkpoint was signed (`events::checkpoint::Proof`). The
//!   query role's *export key* signs the certificate (`attestation`).
//! - For **every entry**, its proof: the event's `sequence`, `hash`,
//!   `prevhash` and the gateway's `signature` of the hash, and an
//!   `attestation`: the export key's signature over the certificate's digest,
//!   those four values and the entry's cells exactly as the file shows them.
//!
//! Every event of a child's history is one chronology entry, so the
//! entries' proofs are the whole chain: sequences 1..N with each `prevhash`
//! the hash before it, the head at the checkpoint among them.
//!
//! # What verification shows ([`verify`])
//!
//! With the gateway's public keys and the export key's:
//! - an entry **removed** leaves a gap in the chain (named by the
//!   reference of the missing sequence, `E<n>`), or, at the end, a head short
//!   of the checkpoint's;
//! - an entry **altered** no longer matches its attestation (named);
//! - an entry **reordered** breaks the rising serial numbers (the entries
//!   off the longest rising run are named);
//! - a hash the gateway never signed, a checkpoint not signed by the gateway
//!   or a head not in its root, is **forged**.
//!
//! Entries recorded after the checkpoint are checked (signatures, links,
//! attestations) but their end is not yet under a signed root: the report
//! lists them as `uncertified`, and a later export certifies them.
//!
//! The narrative and the anonymised wording are derived from sealed fields
//! only the backbone can open; the export key vouches for them, the
//! gateway's signatures and checkpoint for the history they come from.
//!
//! # Formats
//!
//! - JSON: `{"certificate", "entries": [{... "proof": {...}}]}`; an entry's
//!   cells are its RFC 8785 form without `proof`.
//! - CSV: the entry columns, then `sequence`, `hash`, `prevhash`,
//!   `signature`, `attestation`; the last record is `certificate` and the
//!   certificate's JSON. Cells are as a CSV reader returns them (formulas
//!   defused by a leading `'`).
//! - Markdown: the entries table as people read it, then `## Certificate`
//!   (a JSON block) and `## Proof` (a table: `reference` and the proof),
//!   rows paired with entries by reference. Cells are as written between the
//!   pipes, escapes and all.
//! - PDF: pages drawn from the JSON export, which travels inside the PDF as
//!   an attached file; the certificate's `pages` is the digest of the pages'
//!   content, so the pages cannot change without the attached record
//!   failing verification (see `crate::pdf`).

use chrono::{DateTime, SecondsFormat, Utc};
use ed25519_dalek::{SigningKey, VerifyingKey};
use events::canonical::canonical;
use events::chain::{self, Digest};
use events::checkpoint;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap};

/// Which record an export is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Record {
    /// The full record: names, narrative, professionals.
    Full,
    /// For publication: no name, identifier or personal detail.
    Anonymised,
}

/// The certificate an export carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Certificate {
    #[serde(rename = "type")]
    pub kind: String,
    pub record: Record,
    /// `json`, `csv`, `md` or `pdf`.
    pub format: String,
    /// The subject as the checkpoints' hashed Merkle trees name it (the
    /// SHA-256 of its id: `events::checkpoint::subject_name`).
    pub subject: String,
    pub produced_at: String,
    /// How many entries the export holds.
    pub entries: usize,
    /// The subject's last sequence the export holds.
    pub last_sequence: u64,
    /// How far the read models had read the event stream when it was made.
    pub stream_position: u64,
    /// The latest signed checkpoint at or before `stream_position`, as published.
    pub checkpoint: Option<Value>,
    /// That the subject's head was in the checkpoint's root.
    pub head: Option<checkpoint::Proof>,
    /// A PDF's pages: the SHA-256 of their content streams, in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pages: Option<String>,
    /// The export key's signature of the certificate's digest (all but this field).
    #[serde(default)]
    pub attestation: String,
}

/// The `type` of a certificate.
pub const TYPE: &str = "safeguard.export-certificate";

impl Certificate {
    /// What the attestations sign: the RFC 8785 form without `attestation`.
    pub fn digest(&self) -> Digest {
        let mut value = serde_json::to_value(self).unwrap_or_default();
        if let Value::Object(map) = &mut value {
            map.remove("attestation");
        }
        Digest::of(&canonical(&value))
    }
}

/// The SHA-256 of a PDF's page content streams, in page order: what a
/// certificate's `pages` names.
pub fn pages_digest<B: AsRef<[u8]>>(contents: &[B]) -> String {
    let all: Vec<u8> = contents.iter().flat_map(|c| c.as_ref().iter().copied()).collect();
    Digest::of(&all).to_string()
}

/// One event of the subject's chain, as the copy holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub sequence: u64,
    pub hash: Digest,
    pub prevhash: Digest,
    /// The gateway's signature of `hash`, base64.
    pub signature: String,
}

/// An entry's proof, as the export carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proof {
    pub sequence: u64,
    pub hash: String,
    pub prevhash: String,
    pub signature: String,
    pub attestation: String,
}

/// The proof columns of a CSV export, after the entry's own.
pub const PROOF_COLUMNS: [&str; 5] = ["sequence", "hash", "prevhash", "signature", "attestation"];

/// What an attestation signs for one entry.
fn entry_digest(
    certificate: &Digest,
    sequence: u64,
    hash: &str,
    prevhash: &str,
    signature: &str,
    cells: &[String],
) -> Digest {
    let value = json!({
        "certificate": certificate.to_string(),
        "sequence": sequence,
        "hash": hash,
        "prevhash": prevhash,
        "signature": signature,
        "cells": cells,
    });
    Digest::of(&canonical(&value))
}

/// Signs a certificate and its entries with the export key.
#[derive(Debug)]
pub struct Certifier<'a> {
    key: &'a SigningKey,
    certificate: Certificate,
    digest: Digest,
}

impl<'a> Certifier<'a> {
    /// Signs `certificate` (its `attestation` is replaced).
    pub fn new(mut certificate: Certificate, key: &'a SigningKey) -> Self {
        certificate.kind = TYPE.to_owned();
        let digest = certificate.digest();
        certificate.attestation = chain::sign_digest(key, &digest);
        Self { key, certificate, digest }
    }

    pub fn certificate(&self) -> &Certificate {
        &self.certificate
    }

    /// The proof of one entry, showing `cells`.
    pub fn proof(&self, link: &Link, cells: &[String]) -> Proof {
        let (hash, prevhash) = (link.hash.to_string(), link.prevhash.to_string());
        let digest = entry_digest(&self.digest, link.sequence, &hash, &prevhash, &link.signature, cells);
        Proof {
            sequence: link.sequence,
            hash,
            prevhash,
            signature: link.signature.clone(),
            attestation: chain::sign_digest(self.key, &digest),
        }
    }
}

/// The certificate of an export before it is signed.
#[derive(Debug, Clone)]
pub struct Covers {
    pub record: Record,
    pub format: &'static str,
    pub subject: String,
    pub produced_at: DateTime<Utc>,
    pub stream_position: u64,
    /// The checkpoint as published, and the head proof of the subject in it.
    pub checkpoint: Option<(Value, checkpoint::Proof)>,
}

impl Covers {
    /// The unsigned certificate of `entries` entries ending at `last_sequence`.
    pub fn certificate(&self, entries: usize, last_sequence: u64, pages: Option<String>) -> Certificate {
        let (checkpoint, head) = match &self.checkpoint {
            Some((doc, head)) => (Some(doc.clone()), Some(head.clone())),
            None => (None, None),
        };
        Certificate {
            kind: TYPE.to_owned(),
            record: self.record,
            format: self.format.to_owned(),
            subject: self.subject.clone(),
            produced_at: self.produced_at.to_rfc3339_opts(SecondsFormat::Micros, true),
            entries,
            last_sequence,
            stream_position: self.stream_position,
            checkpoint,
            head,
            pages,
            attestation: String::new(),
        }
    }
}

/// An export as a table: the same columns for CSV, Markdown and PDF.
#[derive(Debug, Clone)]
pub struct Table {
    pub title: String,
    /// Lines said before the entries (when it was made, who appears).
    pub preamble: Vec<String>,
    pub columns: Vec<&'static str>,
    pub rows: Vec<Row>,
}

#[derive(Debug, Clone)]
pub struct Row {
    /// The event this entry is.
    pub sequence: u64,
    pub cells: Vec<String>,
}

/// The link of the event at `sequence`; `links` are in sequence order, as
/// the copy reads them.
pub fn link_of(links: &[Link], sequence: u64) -> Option<&Link> {
    links.binary_search_by_key(&sequence, |l| l.sequence).ok().map(|i| &links[i])
}

fn last_sequence(rows: &[Row]) -> u64 {
    rows.iter().map(|r| r.sequence).max().unwrap_or(0)
}

/// The table as certified CSV.
pub fn csv(table: &Table, covers: &Covers, links: &[Link], key: &SigningKey) -> String {
    let certifier = Certifier::new(covers.certificate(table.rows.len(), last_sequence(&table.rows), None), key);
    let mut out = String::new();
    for line in &table.preamble {
        out.push_str(&crate::csv::line(&[format!("# {line}")]));
    }
    let mut header: Vec<&str> = table.columns.clone();
    header.extend(PROOF_COLUMNS);
    out.push_str(&crate::csv::line(&header));
    for row in &table.rows {
        let cells: Vec<String> = row.cells.iter().map(|c| crate::csv::defused(c)).collect();
        let mut line = cells.clone();
        if let Some(link) = link_of(links, row.sequence) {
            let p = certifier.proof(link, &cells);
            line.extend([p.sequence.to_string(), p.hash, p.prevhash, p.signature, p.attestation]);
        }
        out.push_str(&crate::csv::line(&line));
    }
    let certificate = serde_json::to_string(certifier.certificate()).unwrap_or_default();
    out.push_str(&crate::csv::line(&["certificate".to_owned(), certificate]));
    out
}

/// The table as certified Markdown.
pub fn markdown(table: &Table, covers: &Covers, links: &[Link], key: &SigningKey) -> String {
    let certifier = Certifier::new(covers.certificate(table.rows.len(), last_sequence(&table.rows), None), key);
    let mut out = format!("# {}\n\n", table.title);
    for line in &table.preamble {
        out.push_str(&format!("{line}\n\n"));
    }
    out.push_str(&format!("| {} |\n|{}\n", table.columns.join(" | "), "---|".repeat(table.columns.len())));
    let mut proofs = String::new();
    for row in &table.rows {
        let cells: Vec<String> = row.cells.iter().map(|c| crate::format::md_cell(c).trim().to_owned()).collect();
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
        if let Some(link) = link_of(links, row.sequence) {
            let p = certifier.proof(link, &cells);
            proofs.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                crate::narrative::reference_of(p.sequence),
                p.sequence,
                p.hash,
                p.prevhash,
                p.signature,
                p.attestation
            ));
        }
    }
    let certificate = serde_json::to_string_pretty(certifier.certificate()).unwrap_or_default();
    out.push_str(&format!(
        "\n## Certificate\n\nCheck with `safeguard verify --export FILE` and the public keys.\n\n```json\n{certificate}\n```\n"
    ));
    out.push_str("\n## Proof\n\n| reference | sequence | hash | prevhash | signature | attestation |\n|---|---|---|---|---|---|\n");
    out.push_str(&proofs);
    out
}

/// Entries as certified JSON: each object gains its `proof`; `extra` are
/// the document's other fields (title, people, as_of ...).
pub fn json(
    entries: Vec<(u64, Map<String, Value>)>,
    extra: Map<String, Value>,
    covers: &Covers,
    links: &[Link],
    key: &SigningKey,
    pages: Option<String>,
) -> Value {
    let last = entries.iter().map(|(s, _)| *s).max().unwrap_or(0);
    let certifier = Certifier::new(covers.certificate(entries.len(), last, pages), key);
    let entries: Vec<Value> = entries
        .into_iter()
        .map(|(sequence, mut entry)| {
            let cells = vec![String::from_utf8(canonical(&Value::Object(entry.clone()))).unwrap_or_default()];
            if let Some(link) = link_of(links, sequence) {
                entry.insert("proof".into(), json!(certifier.proof(link, &cells)));
            }
            Value::Object(entry)
        })
        .collect();
    let mut doc = extra;
    doc.insert("certificate".into(), json!(certifier.certificate()));
    doc.insert("entries".into(), Value::Array(entries));
    Value::Object(doc)
}

// ---------------------------------------------------------------- verifying

/// What kind of problem verification found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Removed,
    Altered,
    Reordered,
    Forged,
    Malformed,
}

/// One problem, naming the entry where there is one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The entry's lasting reference (`E<sequence>`).
    pub reference: Option<String>,
    pub kind: Kind,
    pub detail: String,
}

/// What `safeguard verify --export` found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub ok: bool,
    pub record: Option<Record>,
    pub format: Option<String>,
    pub subject: Option<String>,
    pub entries: usize,
    /// The stream position of the checkpoint the export is certified by.
    pub checkpoint_covers: Option<u64>,
    /// The last sequence under the signed checkpoint.
    pub certified_through: Option<u64>,
    /// Entries recorded after the checkpoint: signed and linked, their end not yet certified.
    pub uncertified: Vec<String>,
    pub problems: Vec<Problem>,
}

/// An export read back: its certificate and its entries in file order.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub certificate: Certificate,
    pub rows: Vec<ParsedRow>,
}

#[derive(Debug, Clone)]
pub struct ParsedRow {
    /// The serial number the row shows.
    pub serial: Option<u64>,
    /// What the row is called in a report when its proof is missing.
    pub label: String,
    pub proof: Option<Proof>,
    pub cells: Vec<String>,
}

fn malformed(detail: impl Into<String>) -> Problem {
    Problem { reference: None, kind: Kind::Malformed, detail: detail.into() }
}

/// Reads an export (JSON, CSV or Markdown; a PDF's attached record is
/// read by the caller) into its certificate and rows.
pub fn parse(text: &str) -> Result<Parsed, String> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') {
        parse_json(text)
    } else if text.contains("\n## Certificate\n") && text.contains("\n## Proof\n") {
        parse_markdown(text)
    } else {
        parse_csv(text)
    }
}

fn parse_certificate(value: Value) -> Result<Certificate, String> {
    let certificate: Certificate =
        serde_json::from_value(value).map_err(|e| format!("the certificate does not read: {e}"))?;
    if certificate.kind != TYPE {
        return Err(format!("the certificate's type is not {TYPE}"));
    }
    Ok(certificate)
}

fn parse_json(text: &str) -> Result<Parsed, String> {
    let doc = events::json::parse_strict(text.as_bytes()).map_err(|e| format!("not JSON: {e}"))?;
    let certificate = parse_certificate(doc.get("certificate").cloned().ok_or("no certificate")?)?;
    let entries = doc.get("entries").and_then(Value::as_array).ok_or("no entries")?;
    let mut rows = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let Value::Object(entry) = entry else { return Err(format!("entry {} is not an object", i + 1)) };
        let mut entry = entry.clone();
        let proof = entry.remove("proof").and_then(|p| serde_json::from_value::<Proof>(p).ok());
        let serial = entry.get("serial").and_then(Value::as_u64);
        rows.push(ParsedRow {
            serial,
            label: format!("entry {} of the file", i + 1),
            proof,
            cells: vec![String::from_utf8(canonical(&Value::Object(entry))).unwrap_or_default()],
        });
    }
    Ok(Parsed { certificate, rows })
}

/// RFC 4180 records, as `crate::csv` writes them.
pub fn csv_records(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut cell = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    let mut any = false;
    while let Some(c) = chars.next() {
        any = true;
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                cell.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => cell.push(c),
            (false, '"') => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut cell)),
            (false, '\r') => {}
            (false, '\n') => {
                record.push(std::mem::take(&mut cell));
                records.push(std::mem::take(&mut record));
                any = false;
            }
            (false, c) => cell.push(c),
        }
    }
    if any {
        record.push(cell);
        records.push(record);
    }
    records
}

fn parse_csv(text: &str) -> Result<Parsed, String> {
    let records = csv_records(text);
    let header_at = records
        .iter()
        .position(|r| r.iter().any(|c| c == "attestation"))
        .ok_or("not a certified export: no attestation column")?;
    let header = &records[header_at];
    let own = header.len() - PROOF_COLUMNS.len();
    if header[own..] != PROOF_COLUMNS {
        return Err("the proof columns are not the last five".into());
    }
    let serial_at = header.iter().position(|c| c == "serial");
    let mut certificate = None;
    let mut rows = Vec::new();
    for (i, record) in records[header_at + 1..].iter().enumerate() {
        if record.first().map(String::as_str) == Some("certificate") && record.len() >= 2 {
            let value = events::json::parse_strict(record[1].as_bytes()).map_err(|e| format!("certificate: {e}"))?;
            certificate = Some(parse_certificate(value)?);
            continue;
        }
        let cells: Vec<String> = record.iter().take(own).cloned().collect();
        // A base64 signature can begin with `+`, which the writer defused.
        let undefused = |c: &String| match c.strip_prefix('\'') {
            Some(rest) if rest.starts_with(['=', '+', '-', '@']) => rest.to_owned(),
            _ => c.clone(),
        };
        let proof = (record.len() == header.len()).then(|| Proof {
            sequence: record[own].parse().unwrap_or(0),
            hash: record[own + 1].clone(),
            prevhash: record[own + 2].clone(),
            signature: undefused(&record[own + 3]),
            attestation: undefused(&record[own + 4]),
        });
        rows.push(ParsedRow {
            serial: serial_at.and_then(|s| cells.get(s)).and_then(|s| s.parse().ok()),
            label: format!("row {} of the file", i + 1),
            proof: proof.filter(|p| p.sequence > 0),
            cells,
        });
    }
    Ok(Parsed { certificate: certificate.ok_or("no certificate record")?, rows })
}

/// A Markdown table row's cells, as written between unescaped pipes.
fn md_cells(line: &str) -> Option<Vec<String>> {
    let inner = line.trim().strip_prefix('|')?.strip_suffix('|')?;
    let mut cells = Vec::new();
    let mut cell = String::new();
    let mut escaped = false;
    for c in inner.chars() {
        match (escaped, c) {
            (false, '\\') => {
                escaped = true;
                cell.push(c);
            }
            (false, '|') => cells.push(std::mem::take(&mut cell).trim().to_owned()),
            (_, c) => {
                escaped = false;
                cell.push(c);
            }
        }
    }
    cells.push(cell.trim().to_owned());
    Some(cells)
}

fn parse_markdown(text: &str) -> Result<Parsed, String> {
    let (body, rest) = text.split_once("\n## Certificate\n").ok_or("no certificate section")?;
    let json_start = rest.find("```json\n").ok_or("no certificate block")? + "```json\n".len();
    let json_end = json_start + rest[json_start..].find("\n```").ok_or("the certificate block does not end")?;
    let value =
        events::json::parse_strict(&rest.as_bytes()[json_start..json_end]).map_err(|e| format!("certificate: {e}"))?;
    let certificate = parse_certificate(value)?;
    let proof_section = rest.split_once("\n## Proof\n").ok_or("no proof section")?.1;
    let mut proofs: HashMap<String, Proof> = HashMap::new();
    for line in proof_section.lines().filter(|l| l.starts_with('|')).skip(2) {
        let Some(c) = md_cells(line) else { continue };
        if let [reference, sequence, hash, prevhash, signature, attestation] = c.as_slice() {
            proofs.insert(
                reference.clone(),
                Proof {
                    sequence: sequence.parse().unwrap_or(0),
                    hash: hash.clone(),
                    prevhash: prevhash.clone(),
                    signature: signature.clone(),
                    attestation: attestation.clone(),
                },
            );
        }
    }
    let mut lines = body.lines().filter(|l| l.starts_with('|'));
    let header = lines.next().and_then(md_cells).ok_or("no entries table")?;
    let serial_at = header.iter().position(|c| c == "serial");
    let reference_at =
        header.iter().position(|c| c == "reference").ok_or("the entries table has no reference column")?;
    let mut rows = Vec::new();
    for (i, line) in lines.skip(1).enumerate() {
        let cells = md_cells(line).ok_or("a table row does not read")?;
        let reference = cells.get(reference_at).cloned().unwrap_or_default();
        rows.push(ParsedRow {
            serial: serial_at.and_then(|s| cells.get(s)).and_then(|s| s.parse().ok()),
            label: format!("row {} of the table ({reference})", i + 1),
            proof: proofs.get(&reference).cloned(),
            cells,
        });
    }
    Ok(Parsed { certificate, rows })
}

/// Checks a parsed export with the gateway's keys and the export keys. Pure.
pub fn verify(parsed: &Parsed, gateway: &[VerifyingKey], exporter: &[VerifyingKey]) -> Report {
    let c = &parsed.certificate;
    let mut problems = Vec::new();
    let digest = c.digest();
    if !chain::signature_valid_any(exporter, &digest, &c.attestation) {
        problems.push(Problem {
            reference: None,
            kind: Kind::Forged,
            detail: "the certificate is not signed by an export key given, or was changed".into(),
        });
    }

    // The checkpoint and the subject's head in it.
    let mut head: Option<(u64, String)> = None;
    let mut checkpoint_covers = None;
    if let (Some(doc), Some(proof)) = (&c.checkpoint, &c.head) {
        match checkpoint::open(&serde_json::to_vec(doc).unwrap_or_default(), gateway) {
            Ok(cp) => {
                checkpoint_covers = Some(cp.covers);
                if cp.tree != checkpoint::Tree::HashedMerkle || proof.subject != c.subject || !proof.leads_to(&cp.root)
                {
                    problems.push(Problem {
                        reference: Some(crate::narrative::reference_of(proof.sequence)),
                        kind: Kind::Forged,
                        detail: format!(
                            "the head proof does not lead to the root the checkpoint at {} signed",
                            cp.covers
                        ),
                    });
                } else {
                    head = Some((proof.sequence, proof.hash.clone()));
                }
            }
            Err(e) => {
                problems.push(Problem { reference: None, kind: Kind::Forged, detail: format!("checkpoint: {e}") })
            }
        }
    }

    // Each entry on its own: its attestation and the gateway's signature.
    let mut by_sequence: BTreeMap<u64, (usize, &Proof)> = BTreeMap::new();
    for (i, row) in parsed.rows.iter().enumerate() {
        let Some(p) = &row.proof else {
            problems.push(Problem {
                reference: None,
                kind: Kind::Altered,
                detail: format!("{} has no proof: it was added or its reference changed", row.label),
            });
            continue;
        };
        let reference = crate::narrative::reference_of(p.sequence);
        let entry = entry_digest(&digest, p.sequence, &p.hash, &p.prevhash, &p.signature, &row.cells);
        if !chain::signature_valid_any(exporter, &entry, &p.attestation) {
            problems.push(Problem {
                reference: Some(reference.clone()),
                kind: Kind::Altered,
                detail: format!("{reference} ({}) does not show what was certified", row.label),
            });
        }
        match Digest::parse(&p.hash) {
            Ok(h) if chain::signature_valid_any(gateway, &h, &p.signature) => {}
            _ => problems.push(Problem {
                reference: Some(reference.clone()),
                kind: Kind::Forged,
                detail: format!("{reference}'s hash is not signed by the gateway"),
            }),
        }
        if by_sequence.insert(p.sequence, (i, p)).is_some() {
            problems.push(Problem {
                reference: Some(reference.clone()),
                kind: Kind::Altered,
                detail: format!("{reference} appears twice"),
            });
        }
    }

    // The chain: every sequence from 1, each linked to the one before.
    let last = by_sequence.keys().next_back().copied().unwrap_or(0).max(c.last_sequence);
    let end = head.as_ref().map_or(last, |(s, _)| last.max(*s));
    let mut previous: Option<&Proof> = None;
    for sequence in 1..=end {
        let reference = crate::narrative::reference_of(sequence);
        match by_sequence.get(&sequence) {
            None => {
                problems.push(Problem {
                    reference: Some(reference.clone()),
                    kind: Kind::Removed,
                    detail: format!("{reference} of the history is not in the export"),
                });
                previous = None;
            }
            Some((_, p)) => {
                let expected = match (sequence, previous) {
                    (1, _) => Some(Digest::ZERO.to_string()),
                    (_, Some(before)) => Some(before.hash.clone()),
                    (_, None) => None,
                };
                if let Some(expected) = expected
                    && p.prevhash != expected
                {
                    problems.push(Problem {
                        reference: Some(reference.clone()),
                        kind: Kind::Altered,
                        detail: format!("{reference} does not follow the entry before it in the chain"),
                    });
                }
                previous = Some(p);
            }
        }
    }
    let uncertified;
    if let Some((sequence, hash)) = &head {
        match by_sequence.get(sequence) {
            Some((_, p)) if &p.hash == hash => {}
            Some(_) => problems.push(Problem {
                reference: Some(crate::narrative::reference_of(*sequence)),
                kind: Kind::Altered,
                detail: "the entry at the checkpoint's head is not the one it signed".into(),
            }),
            None => {} // reported as removed above
        }
        uncertified =
            by_sequence.keys().filter(|s| *s > sequence).map(|s| crate::narrative::reference_of(*s)).collect();
    } else {
        uncertified = by_sequence.keys().map(|s| crate::narrative::reference_of(*s)).collect();
    }
    if parsed.rows.len() != c.entries {
        problems.push(Problem {
            reference: None,
            kind: if parsed.rows.len() < c.entries { Kind::Removed } else { Kind::Altered },
            detail: format!("the certificate lists {} entries and the export holds {}", c.entries, parsed.rows.len()),
        });
    }

    // The order: serial numbers rise through the file; the entries off the
    // longest rising run are the ones moved.
    let serials: Vec<u64> = parsed.rows.iter().map(|r| r.serial.unwrap_or(0)).collect();
    let kept = longest_rising(&serials);
    for (i, row) in parsed.rows.iter().enumerate() {
        if !kept.contains(&i) {
            problems.push(Problem {
                reference: row.proof.as_ref().map(|p| crate::narrative::reference_of(p.sequence)),
                kind: Kind::Reordered,
                detail: format!("{} (serial {}) is out of its place", row.label, serials[i]),
            });
        }
    }

    Report {
        ok: problems.is_empty(),
        record: Some(c.record),
        format: Some(c.format.clone()),
        subject: Some(c.subject.clone()),
        entries: parsed.rows.len(),
        checkpoint_covers,
        certified_through: head.map(|(s, _)| s),
        uncertified,
        problems,
    }
}

/// The positions of one longest strictly rising run through `values`.
fn longest_rising(values: &[u64]) -> std::collections::HashSet<usize> {
    // Patience sorting: tails[k] is the position ending the best run of length k+1.
    let mut tails: Vec<usize> = Vec::new();
    let mut before: Vec<Option<usize>> = vec![None; values.len()];
    for (i, v) in values.iter().enumerate() {
        let k = tails.partition_point(|&t| values[t] < *v);
        before[i] = k.checked_sub(1).map(|k| tails[k]);
        if k == tails.len() {
            tails.push(i);
        } else {
            tails[k] = i;
        }
    }
    let mut kept = std::collections::HashSet::new();
    let mut at = tails.last().copied();
    while let Some(i) = at {
        kept.insert(i);
        at = before[i];
    }
    kept
}

/// A report for an export that could not be read at all.
pub fn unreadable(detail: impl Into<String>) -> Report {
    Report {
        ok: false,
        record: None,
        format: None,
        subject: None,
        entries: 0,
        checkpoint_covers: None,
        certified_through: None,
        uncertified: Vec::new(),
        problems: vec![malformed(detail)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        chain::signing_key_from_seed([seed; 32])
    }

    /// A chain of `n` events signed by the gateway key, a checkpoint over
    /// it and another subject, and a table of one row per event.
    fn fixture(n: u64) -> (Vec<Link>, Covers, Table) {
        let gateway = key(1);
        let mut links = Vec::new();
        let mut prev = Digest::ZERO;
        for sequence in 1..=n {
            let hash = Digest::of(format!("event {sequence}").as_bytes());
            links.push(Link { sequence, hash, prevhash: prev, signature: chain::sign_digest(&gateway, &hash) });
            prev = hash;
        }
        let other = Digest::of(b"other");
        let heads = [("child-a", n, &prev), ("child-b", 3, &other)];
        let root = checkpoint::Tree::HashedMerkle.root(heads);
        let at = DateTime::UNIX_EPOCH;
        let doc = checkpoint::sign("SG_EVENTS", 99, (2, n + 3), &root, &Digest::ZERO, at, &gateway);
        let head = checkpoint::Proof::of(checkpoint::Tree::HashedMerkle, heads, "child-a").expect("head");
        let covers = Covers {
            record: Record::Anonymised,
            format: "csv",
            subject: checkpoint::subject_name("child-a"),
            produced_at: at,
            stream_position: 100,
            checkpoint: Some((Value::Object(doc), head)),
        };
        // Business order differs from sequence order: serials follow the rows.
        let mut order: Vec<u64> = (1..=n).collect();
        order.swap(1, 2);
        let rows = order
            .iter()
            .enumerate()
            .map(|(i, s)| Row {
                sequence: *s,
                cells: vec![(i + 1).to_string(), crate::narrative::reference_of(*s), format!("said, | \"{s}\"\nmore")],
            })
            .collect();
        let table = Table {
            title: "Chronology".into(),
            preamble: vec!["Made now".into()],
            columns: vec!["serial", "reference", "event"],
            rows,
        };
        (links, covers, table)
    }

    fn check(text: &str) -> Report {
        let parsed = parse(text).expect("parses");
        verify(&parsed, &[key(1).verifying_key()], &[key(2).verifying_key()])
    }

    fn kinds(report: &Report) -> Vec<(Option<String>, Kind)> {
        report.problems.iter().map(|p| (p.reference.clone(), p.kind)).collect()
    }

    #[test]
    fn an_untouched_export_verifies_in_every_text_format() {
        let (links, covers, table) = fixture(6);
        let csv = csv(&table, &covers, &links, &key(2));
        let md = markdown(&table, &covers, &links, &key(2));
        for text in [csv, md] {
            let report = check(&text);
            assert!(report.ok, "{:?}\n{text}", report.problems);
            assert_eq!(report.certified_through, Some(6));
            assert!(report.uncertified.is_empty());
        }
        let report = verify(
            &parse(&csv_of(&links, &covers, &table)).expect("parses"),
            &[key(3).verifying_key()],
            &[key(2).verifying_key()],
        );
        assert!(!report.ok, "another gateway key does not verify");
    }

    fn csv_of(links: &[Link], covers: &Covers, table: &Table) -> String {
        csv(table, covers, links, &key(2))
    }

    #[test]
    fn a_removed_an_altered_and_a_reordered_entry_are_each_named() {
        let (links, covers, table) = fixture(8);
        let text = csv_of(&links, &covers, &table);
        let lines: Vec<&str> = text.split_inclusive("\r\n").collect();
        // lines[0] preamble, lines[1] header, rows from 2; row 4 holds E4 (serial 4).
        let removed: String = lines.iter().enumerate().filter(|(i, _)| *i != 5).map(|(_, l)| *l).collect();
        let report = check(&removed);
        assert!(kinds(&report).contains(&(Some("E4".into()), Kind::Removed)), "{:?}", report.problems);

        let altered = text.replacen("said, | \"\"5\"\"", "said, | \"\"five\"\"", 1);
        assert_ne!(altered, text);
        let report = check(&altered);
        assert_eq!(kinds(&report), vec![(Some("E5".into()), Kind::Altered)], "{:?}", report.problems);

        let mut moved: Vec<&str> = lines.clone();
        moved.swap(6, 8);
        let report = check(&moved.concat());
        let named: Vec<_> = kinds(&report);
        assert!(named.iter().all(|(_, k)| *k == Kind::Reordered) && !named.is_empty(), "{named:?}");

        let md = markdown(&table, &covers, &links, &key(2));
        let altered = md.replacen("\"3\" more", "\"3\" less", 1);
        assert_ne!(altered, md);
        assert_eq!(kinds(&check(&altered)), vec![(Some("E3".into()), Kind::Altered)]);
    }

    #[test]
    fn entries_after_the_checkpoint_are_listed_as_uncertified() {
        let (mut links, covers, mut table) = fixture(4);
        let hash = Digest::of(b"event 5");
        links.push(Link { sequence: 5, hash, prevhash: links[3].hash, signature: chain::sign_digest(&key(1), &hash) });
        table.rows.push(Row { sequence: 5, cells: vec!["5".into(), "E5".into(), "late".into()] });
        let report = check(&csv_of(&links, &covers, &table));
        assert!(report.ok, "{:?}", report.problems);
        assert_eq!(report.uncertified, vec!["E5".to_owned()]);
    }

    #[test]
    fn json_exports_verify_and_name_an_altered_entry() {
        let (links, covers, _) = fixture(3);
        let entries = (1..=3)
            .map(|s| (s, json!({"serial": s, "event": format!("e{s}")}).as_object().cloned().unwrap_or_default()))
            .collect();
        let doc = json(entries, Map::new(), &covers, &links, &key(2), None);
        let text = serde_json::to_string(&doc).expect("json");
        assert!(check(&text).ok);
        let altered = text.replace("\"e2\"", "\"e two\"");
        assert_eq!(kinds(&check(&altered)), vec![(Some("E2".into()), Kind::Altered)]);
    }

    #[test]
    fn the_longest_rising_run_keeps_all_but_the_moved() {
        let kept = longest_rising(&[1, 2, 6, 4, 5, 3, 7]);
        assert_eq!(kept.len(), 5);
        assert!(!kept.contains(&2) || !kept.contains(&5));
    }
}
