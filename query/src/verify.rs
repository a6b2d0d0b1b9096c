//! Verification: every chain and signature in the event stream, the stream
//! against its Postgres copy, and the signed checkpoints on the audit
//! stream. `safeguard verify` and `GET /v1/verify` both run [`verify`].
//!
//! One pass over the stream, in stream order, so memory stays small (a few
//! numbers per event, no payloads): each message is checked on its own
//! (bytes against hash, hash against signature: `events::chain::check_event`)
//! on a blocking thread, chunk by chunk, while the next chunk is read; the
//! links between a subject's events are checked at the end
//! (`events::chain::check_links`). Checkpoint roots are recomputed from
//! the subjects' heads as the pass crosses each checkpoint's position.
//!
//! Without a database (`copy: None`) it needs nothing but NATS and the
//! public key: the outside verifier of CONTRACT.md.

use anyhow::Context as _;
use async_nats::jetstream;
use ed25519_dalek::VerifyingKey;
use events::chain::{self, Break, BreakKind, Digest, Head, Link};
use events::{Subject, checkpoint, subjects};
use futures::StreamExt as _;
use platform::bus;
use projections::PgPool;
use serde::Serialize;
use std::collections::HashMap;

/// Messages checked per blocking task.
const CHUNK: usize = 2000;

/// What verification found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// No break anywhere and every checkpoint holds.
    pub ok: bool,
    /// Events checked.
    pub checked: u64,
    pub breaks: Vec<Break>,
    /// The stream position the pass went up to.
    pub stream_position: u64,
    /// How far the Postgres copy was compared (its projector's position), if it was.
    pub copy_position: Option<u64>,
    pub checkpoints: CheckpointReport,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckpointReport {
    /// Checkpoints whose signature and root were checked.
    pub checked: u64,
    /// The latest checkpoint that holds: its position and root.
    pub latest: Option<(u64, String)>,
    pub failures: Vec<CheckpointFailure>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckpointFailure {
    /// The checkpoint's position in the audit stream.
    pub audit_sequence: u64,
    pub covers: Option<u64>,
    pub reason: String,
}

/// One message, placed.
struct Item {
    stream_seq: u64,
    subject: String,
    position: usize,
    bytes: bytes::Bytes,
}

/// A chunk's results, in stream order.
struct Checked {
    links: Vec<(u64, String, Option<Link>)>,
    breaks: Vec<Break>,
}

/// Verifies the whole stream (or one child's history) against `keys` (every
/// public key the gateway has signed with), and against the Postgres copy
/// when `copy` is given.
#[tracing::instrument(name = "verify", skip_all, fields(one_subject = child.is_some(), with_copy = copy.is_some()))]
pub async fn verify(
    js: &jetstream::Context,
    copy: Option<&PgPool>,
    keys: &[VerifyingKey],
    child: Option<&Subject>,
) -> anyhow::Result<Report> {
    let stream = js.get_stream(bus::EVENTS_STREAM).await.context("could not open the event stream")?;
    let filter = child.map_or_else(|| subjects::EVENTS_FILTER.to_owned(), subjects::event_subject);
    // The copy's position before the stream's length: everything the copy
    // holds up to there is then among the messages this pass reads, however
    // much arrives meanwhile. The least of the projectors' positions: only
    // below it is every subject's history in the copy.
    let copy_position = match copy {
        Some(pool) => {
            Some(projections::health::complete_up_to(pool).await.context("could not read the copy's position")?)
        }
        None => None,
    };
    let to_read = projections::leader::count_matching(&stream, &filter).await?;

    // Checkpoints cover every subject, so only a whole-stream pass can check them.
    let mut report = CheckpointReport::default();
    let mut pending_checkpoints = match child {
        None => read_checkpoints(js, keys, &mut report).await?,
        Some(_) => Vec::new(),
    };
    pending_checkpoints.reverse(); // popped from the end, oldest first

    let mut breaks = Vec::new();
    let mut links: HashMap<String, Vec<Link>> = HashMap::new();
    let mut heads: HashMap<String, (u64, Digest)> = HashMap::new();
    let mut positions: HashMap<String, usize> = HashMap::new();
    let mut checked = 0u64;
    let mut last_seq = 0u64;
    let mut compared = 0u64;

    let mut messages = if to_read > 0 { Some(bus::read_ordered(&stream, &filter, 1).await?) } else { None };
    let mut read = 0u64;
    // The count can come from a replica still catching up after a node
    // restarts, and fall short. So reading also goes on until it has passed
    // the copy's position, or the reader says nothing is left: the copy is
    // then never compared against a stream read short of it.
    let mut last_read = 0u64;
    let mut left_after = u64::MAX;
    let mut end_confirmed = false;
    let more = |read: u64, last_read: u64, left_after: u64| {
        read < to_read || (copy_position.is_some_and(|p| last_read < p) && left_after > 0 && to_read > 0)
    };
    let mut in_flight: futures::stream::FuturesOrdered<tokio::task::JoinHandle<Checked>> =
        futures::stream::FuturesOrdered::new();
    loop {
        // Read one chunk while up to two are being checked.
        let mut chunk = Vec::with_capacity(CHUNK);
        while more(read, last_read, left_after) && chunk.len() < CHUNK {
            let Some(messages) = messages.as_mut() else { break };
            let message = messages
                .next()
                .await
                .context("the event stream ended early")?
                .map_err(|e| anyhow::anyhow!("reading the event stream: {e}"))?;
            read += 1;
            let info = message.info().map_err(|e| anyhow::anyhow!("{e}"))?;
            let stream_seq = info.stream_sequence;
            (last_read, left_after) = (stream_seq, info.pending);
            let Some(subject) = subjects::subject_of(message.subject.as_str()) else { continue };
            let position = positions.entry(subject.to_owned()).or_default();
            chunk.push(Item {
                stream_seq,
                subject: subject.to_owned(),
                position: *position,
                bytes: message.payload.clone(),
            });
            *position += 1;
        }
        if !chunk.is_empty() {
            // The copy is compared over (compared, end]: up to this chunk's
            // last message, and on the last chunk up to the copy's position,
            // so rows the stream lacks at its end are found too.
            let last_in_chunk = chunk.last().map_or(compared, |i| i.stream_seq);
            let (rows, compare_upto) = match (copy, copy_position) {
                (Some(pool), Some(limit)) => {
                    let end = if more(read, last_read, left_after) { last_in_chunk.min(limit) } else { limit };
                    let rows = if end > compared {
                        projections::copy::rows(pool, child, compared, end)
                            .await
                            .context("could not read the Postgres copy")?
                    } else {
                        Vec::new()
                    };
                    compared = compared.max(end);
                    (rows, Some(end))
                }
                _ => (Vec::new(), None),
            };
            let keys = keys.to_vec();
            in_flight.push_back(tokio::task::spawn_blocking(move || check_chunk(&chunk, &rows, compare_upto, &keys)));
        }
        // A reader on a replica still catching up (after a leader change)
        // can report nothing left while the stream holds more: before the
        // copy's rows past what was read are taken as missing from the
        // stream, the stream itself is asked (through its leader).
        if !more(read, last_read, left_after)
            && left_after == 0
            && !end_confirmed
            && copy_position.is_some_and(|p| last_read < p)
        {
            if stream_has_after(&stream, &filter, last_read).await? {
                left_after = u64::MAX;
            } else {
                end_confirmed = true;
            }
        }
        let done_reading = !more(read, last_read, left_after);
        if in_flight.len() >= 2 || (done_reading && !in_flight.is_empty()) {
            let Some(result) = in_flight.next().await else { break };
            let result = result.context("a verification task failed")?;
            breaks.extend(result.breaks);
            for (stream_seq, subject, link) in result.links {
                while let Some(cp) = pending_checkpoints.last()
                    && cp.1.covers < stream_seq
                {
                    let (audit_seq, cp) = pending_checkpoints.pop().unwrap_or_else(|| unreachable!());
                    check_root(&cp, audit_seq, &heads, checked, &mut report);
                }
                checked += 1;
                last_seq = stream_seq;
                if let Some(link) = link {
                    heads.insert(subject.clone(), (link.sequence, link.hash));
                    links.entry(subject).or_default().push(link);
                }
            }
        } else if done_reading {
            break;
        }
    }
    // Checkpoints at or beyond the end of what was read.
    let stream_last = stream.get_info().await.map(|i| i.state.last_sequence).unwrap_or(last_seq);
    check_remaining_checkpoints(pending_checkpoints, stream_last, &heads, checked, &mut report);

    // A copy that holds events when the stream holds none of them.
    if let (Some(pool), Some(limit)) = (copy, copy_position)
        && compared < limit
    {
        let rows =
            projections::copy::rows(pool, child, compared, limit).await.context("could not read the Postgres copy")?;
        breaks.extend(rows.into_iter().map(|row| Break {
            subject: row.subject,
            sequence: row.sequence,
            kind: BreakKind::CopyMismatch,
            detail: "the copy holds an event the stream lacks".into(),
        }));
    }

    // The copy's heads say where each subject's history should end, so
    // events removed from the end of the stream show as missing.
    let copy_heads = match (copy, copy_position) {
        (Some(pool), Some(limit)) => projections::copy::heads(pool, child, limit.min(last_seq))
            .await
            .context("could not read the copy's heads")?,
        _ => HashMap::new(),
    };
    check_chains(&links, &copy_heads, &mut breaks);
    Ok(Report {
        ok: breaks.is_empty() && report.failures.is_empty(),
        checked,
        breaks,
        stream_position: last_seq,
        copy_position,
        checkpoints: report,
    })
}

/// Checks a chunk's messages on their own, and against the copy's rows for
/// the same stream positions (up to `compare_upto`).
fn check_chunk(
    chunk: &[Item],
    rows: &[projections::copy::CopyRow],
    compare_upto: Option<u64>,
    keys: &[VerifyingKey],
) -> Checked {
    let mut breaks = Vec::new();
    let mut links = Vec::with_capacity(chunk.len());
    for item in chunk {
        let link = chain::check_event(&item.subject, item.position, &item.bytes, keys, &mut breaks);
        links.push((item.stream_seq, item.subject.clone(), link));
    }
    if let Some(upto) = compare_upto {
        let by_seq: HashMap<u64, &projections::copy::CopyRow> = rows.iter().map(|r| (r.stream_seq, r)).collect();
        let mismatch = |subject: &str, sequence: u64, detail: &str| Break {
            subject: subject.to_owned(),
            sequence,
            kind: BreakKind::CopyMismatch,
            detail: detail.to_owned(),
        };
        for (item, (_, _, link)) in chunk.iter().zip(&links) {
            if item.stream_seq > upto {
                continue;
            }
            let sequence = link.map_or(item.position as u64 + 1, |l| l.sequence);
            match by_seq.get(&item.stream_seq) {
                Some(row) if chain::same_event(&item.bytes, row.document.as_bytes()) => {}
                Some(_) => {
                    breaks.push(mismatch(&item.subject, sequence, "the stream and the copy hold different events"))
                }
                None => breaks.push(mismatch(&item.subject, sequence, "the copy lacks an event the stream holds")),
            }
        }
        let in_stream: std::collections::HashSet<u64> = chunk.iter().map(|i| i.stream_seq).collect();
        for row in rows.iter().filter(|r| r.stream_seq <= upto && !in_stream.contains(&r.stream_seq)) {
            breaks.push(mismatch(&row.subject, row.sequence, "the copy holds an event the stream lacks"));
        }
    }
    Checked { links, breaks }
}

fn check_root(
    cp: &checkpoint::Checkpoint,
    audit_seq: u64,
    heads: &HashMap<String, (u64, Digest)>,
    events: u64,
    report: &mut CheckpointReport,
) {
    let root = cp.tree.root(heads.iter().map(|(s, (seq, hash))| (s.as_str(), *seq, hash)));
    report.checked += 1;
    if root == cp.root && heads.len() as u64 == cp.subjects && events == cp.events {
        report.latest = Some((cp.covers, cp.root.to_string()));
    } else {
        report.failures.push(CheckpointFailure {
            audit_sequence: audit_seq,
            covers: Some(cp.covers),
            reason: format!(
                "the stream up to position {} no longer folds to the signed root \
                 ({} subjects and {} events signed, {} and {events} found)",
                cp.covers,
                cp.subjects,
                cp.events,
                heads.len()
            ),
        });
    }
}

/// Every checkpoint on the audit stream whose signature holds, in order;
/// the rest are reported. Each must also name the one before it.
/// Whether the stream holds a message matching `filter` after stream
/// position `after`, asked of the stream's leader.
async fn stream_has_after(stream: &jetstream::stream::Stream, filter: &str, after: u64) -> anyhow::Result<bool> {
    use async_nats::jetstream::stream::RawMessageErrorKind;
    match stream.raw_message_builder().sequence(after + 1).next_by_subject(filter.to_owned()).send().await {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == RawMessageErrorKind::NoMessageFound => Ok(false),
        Err(e) => Err(anyhow::Error::new(e).context("could not ask the event stream for its next message")),
    }
}

/// The checkpoints not yet checked once every message is read: each is
/// checked against the heads, or fails if it covers more than the stream
/// holds. Pure.
fn check_remaining_checkpoints(
    mut pending: Vec<(u64, checkpoint::Checkpoint)>,
    stream_last: u64,
    heads: &HashMap<String, (u64, Digest)>,
    checked: u64,
    report: &mut CheckpointReport,
) {
    while let Some((audit_seq, cp)) = pending.pop() {
        if cp.covers > stream_last {
            report.failures.push(CheckpointFailure {
                audit_sequence: audit_seq,
                covers: Some(cp.covers),
                reason: format!("covers stream position {} but the stream ends at {stream_last}", cp.covers),
            });
        } else {
            check_root(&cp, audit_seq, heads, checked, report);
        }
    }
}

/// Each subject's chain of links, ending where the copy says its history
/// ends (so events removed from the stream's end show as missing); breaks
/// sorted by subject and sequence, each once. Pure.
fn check_chains(links: &HashMap<String, Vec<Link>>, copy_heads: &HashMap<String, Head>, breaks: &mut Vec<Break>) {
    for (subject, subject_links) in links {
        chain::check_links(subject, subject_links, copy_heads.get(subject).copied(), breaks);
    }
    for (subject, head) in copy_heads {
        if !links.contains_key(subject) {
            chain::check_links(subject, &[], Some(*head), breaks);
        }
    }
    breaks.sort_by(|a, b| (&a.subject, a.sequence).cmp(&(&b.subject, b.sequence)));
    breaks.dedup();
}

async fn read_checkpoints(
    js: &jetstream::Context,
    keys: &[VerifyingKey],
    report: &mut CheckpointReport,
) -> anyhow::Result<Vec<(u64, checkpoint::Checkpoint)>> {
    let stream = js.get_stream(bus::AUDIT_STREAM).await.context("could not open the audit stream")?;
    let total = projections::leader::count_matching(&stream, subjects::CHECKPOINT).await?;
    let mut out: Vec<(u64, checkpoint::Checkpoint)> = Vec::new();
    if total == 0 {
        return Ok(out);
    }
    let mut messages = bus::read_ordered(&stream, subjects::CHECKPOINT, 1).await?;
    let mut previous = Digest::ZERO;
    for _ in 0..total {
        let message = messages
            .next()
            .await
            .context("the audit stream ended early")?
            .map_err(|e| anyhow::anyhow!("reading checkpoints: {e}"))?;
        let audit_sequence = message.info().map_err(|e| anyhow::anyhow!("{e}"))?.stream_sequence;
        match checkpoint::open(&message.payload, keys) {
            Ok(cp) => {
                if cp.previous != previous {
                    report.failures.push(CheckpointFailure {
                        audit_sequence,
                        covers: Some(cp.covers),
                        reason: "does not name the checkpoint before it".into(),
                    });
                }
                previous = cp.hash;
                out.push((audit_sequence, cp));
            }
            Err(e) => report.failures.push(CheckpointFailure { audit_sequence, covers: None, reason: e.to_string() }),
        }
    }
    out.sort_by_key(|(_, cp)| cp.covers);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint(covers: u64, heads: &HashMap<String, (u64, Digest)>, events: u64) -> checkpoint::Checkpoint {
        checkpoint::Checkpoint {
            stream: bus::EVENTS_STREAM.into(),
            covers,
            subjects: heads.len() as u64,
            events,
            root: checkpoint::Tree::HashedMerkle.root(heads.iter().map(|(s, (seq, hash))| (s.as_str(), *seq, hash))),
            tree: checkpoint::Tree::HashedMerkle,
            previous: Digest::ZERO,
            at: chrono::DateTime::UNIX_EPOCH,
            hash: Digest::of(b"cp"),
        }
    }

    #[test]
    fn a_checkpoint_beyond_the_stream_fails_and_one_that_folds_to_its_root_holds() {
        let heads: HashMap<String, (u64, Digest)> = [("a".to_owned(), (2, Digest::of(b"a2")))].into();
        let mut report = CheckpointReport::default();
        let pending = vec![(7, checkpoint(10, &heads, 2)), (5, checkpoint(4, &heads, 2))];
        check_remaining_checkpoints(pending, 9, &heads, 2, &mut report);
        assert_eq!(report.checked, 1, "the one within the stream is checked");
        assert_eq!(report.latest, Some((4, checkpoint(4, &heads, 2).root.to_string())));
        assert_eq!(report.failures.len(), 1);
        assert_eq!(report.failures[0].audit_sequence, 7);
        assert!(report.failures[0].reason.contains("the stream ends at 9"), "{}", report.failures[0].reason);
    }

    #[test]
    fn a_checkpoint_made_before_merkle_roots_still_holds_and_a_wrong_tree_does_not() {
        let heads: HashMap<String, (u64, Digest)> =
            [("a".to_owned(), (2, Digest::of(b"a2"))), ("b".to_owned(), (1, Digest::of(b"b1")))].into();
        let mut flat = checkpoint(4, &heads, 3);
        flat.tree = checkpoint::Tree::Flat;
        flat.root = checkpoint::root(heads.iter().map(|(s, (seq, hash))| (s.as_str(), *seq, hash)));
        let mut report = CheckpointReport::default();
        check_root(&flat, 5, &heads, 3, &mut report);
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        let mut mislabelled = flat.clone();
        mislabelled.tree = checkpoint::Tree::HashedMerkle;
        check_root(&mislabelled, 6, &heads, 3, &mut report);
        assert_eq!(report.failures.len(), 1, "a flat root read as a Merkle one does not fold");
    }

    #[test]
    fn a_subject_the_copy_has_and_the_stream_lacks_is_a_break_reported_once() {
        let link = |sequence: u64, prev: Option<Digest>| Link {
            position: (sequence - 1) as usize,
            sequence,
            hash: Digest::of(format!("e{sequence}").as_bytes()),
            prevhash: prev,
            intact: true,
        };
        let first = link(1, Some(Digest::ZERO));
        let second = link(2, Some(first.hash));
        let links: HashMap<String, Vec<Link>> = [("kept".to_owned(), vec![first, second])].into();
        let mut copy_heads: HashMap<String, Head> =
            [("kept".to_owned(), Head { sequence: 2, hash: second.hash })].into();
        let mut breaks = Vec::new();
        check_chains(&links, &copy_heads, &mut breaks);
        assert_eq!(breaks, vec![], "an intact chain ending where the copy says");
        copy_heads.insert("gone".to_owned(), Head { sequence: 3, hash: Digest::of(b"x") });
        check_chains(&links, &copy_heads, &mut breaks);
        assert!(!breaks.is_empty() && breaks.iter().all(|b| b.subject == "gone"), "{breaks:?}");
        let n = breaks.len();
        check_chains(&links, &copy_heads, &mut breaks);
        assert_eq!(breaks.len(), n, "each break once");
    }
}
