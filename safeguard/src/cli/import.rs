//! `safeguard import FILE`: bulk import of NDJSON CloudEvents, the path for
//! migrating a council's history from a legacy case system.
//!
//! Events go through the gateway's own `POST /v1/events` with an admin
//! token, so they get exactly the gateway's validation, idempotency,
//! sealing, chaining and signing, and an original `recordedat` is kept
//! (only admins may send one). Batches of up to 1,000 events are sent
//! several at a time, but never two at once that share a subject, so each
//! child's events are stored in file order.
//!
//! Resuming: after each batch the longest run of lines stored from the
//! start is written to `FILE.progress`; a new run of the same file skips
//! those lines. Anything sent again is harmless (ids are never stored
//! twice; the gateway answers `"duplicate": true`), so the progress file
//! only saves time, it is not needed for correctness.

use anyhow::Context as _;
use serde_json::Value;
use std::collections::{HashSet, VecDeque};
use std::io::{BufRead as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, clap::Args)]
pub struct ImportArgs {
    /// NDJSON file: one CloudEvent per line.
    pub file: PathBuf,
    /// The gateway.
    #[arg(long = "gateway-url", env = "SAFEGUARD_URL", default_value = "http://127.0.0.1:8080")]
    pub gateway_url: String,
    /// An admin's token.
    #[arg(long, env = "SAFEGUARD_TOKEN", hide_env_values = true)]
    pub token: String,
    /// Events per request (at most 1,000).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub batch: u16,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u8).range(1..=32))]
    pub concurrency: u8,
    /// Ignore recorded progress and start from the first line.
    #[arg(long)]
    pub from_start: bool,
}

/// What `FILE.progress` holds.
#[derive(Debug, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
struct Progress {
    /// The file's size when the progress was recorded: a different file is started afresh.
    file_size: u64,
    /// Lines (counting blank ones) stored from the start of the file.
    lines_done: u64,
}

fn progress_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".progress");
    name.into()
}

fn read_progress(file: &Path, size: u64) -> u64 {
    let Ok(text) = std::fs::read_to_string(progress_path(file)) else { return 0 };
    match serde_json::from_str::<Progress>(&text) {
        Ok(p) if p.file_size == size => p.lines_done,
        _ => 0,
    }
}

/// Written to a temporary file and renamed, so a kill leaves the old or the new, never half.
fn write_progress(file: &Path, size: u64, lines_done: u64) -> anyhow::Result<()> {
    let path = progress_path(file);
    let tmp = path.with_extension("progress.tmp");
    std::fs::write(&tmp, serde_json::to_vec(&Progress { file_size: size, lines_done })?)?;
    std::fs::rename(&tmp, &path)?;
    Ok(())
}

/// One request's worth of lines.
struct Batch {
    /// Line numbers (1-based) of the events, in order.
    lines: Vec<u64>,
    /// The last line the batch covers (blank lines included).
    last_line: u64,
    events: Vec<Value>,
    subjects: HashSet<String>,
}

/// What the gateway said about a batch.
struct Sent {
    last_line: u64,
    subjects: HashSet<String>,
    stored: u64,
    duplicates: u64,
    /// The highest stream position the gateway gave the batch's events.
    position: u64,
}

/// Totals of a run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub stored: u64,
    pub duplicates: u64,
    pub skipped_lines: u64,
    /// The highest stream position of the events sent: a read with
    /// `min_position` at it sees the whole import.
    pub position: u64,
}

/// Imports the file; prints a progress bar and a summary on stderr.
pub async fn run(args: ImportArgs) -> anyhow::Result<Summary> {
    let size = std::fs::metadata(&args.file).with_context(|| format!("could not read {}", args.file.display()))?.len();
    let total_lines = count_lines(&args.file)?;
    let skip = if args.from_start { 0 } else { read_progress(&args.file, size) };
    if skip > 0 {
        eprintln!("resuming after line {skip} of {total_lines} (stored by an earlier run)");
    }
    let reader = std::io::BufReader::new(std::fs::File::open(&args.file)?);
    let gateway = super::client::RoleClient::gateway(&args.gateway_url, &args.token)?;
    let started = Instant::now();

    let mut summary = Summary { skipped_lines: skip, ..Summary::default() };
    let mut in_flight = futures::stream::FuturesUnordered::new();
    let mut busy: HashSet<String> = HashSet::new();
    // Batches in file order (each ends on its last line), and whether each is stored:
    // the stored-from-the-start mark moves over the done ones at the front.
    let mut order: VecDeque<(u64, bool)> = VecDeque::new();
    let mut done_through = skip;
    let mut last_drawn = Instant::now() - Duration::from_secs(1);

    let mut lines = reader.lines().enumerate().skip(usize::try_from(skip).unwrap_or(usize::MAX)).peekable();
    loop {
        let batch = next_batch(&mut lines, usize::from(args.batch))?;
        let Some(batch) = batch else { break };
        // Never two requests at once for one subject: its events must be stored in file order.
        while !in_flight.is_empty()
            && (in_flight.len() >= usize::from(args.concurrency) || !busy.is_disjoint(&batch.subjects))
        {
            let sent = next_done(&mut in_flight).await?;
            done_through = settle(&sent, &mut busy, &mut order, &mut summary).unwrap_or(done_through);
            write_progress(&args.file, size, done_through)?;
        }
        busy.extend(batch.subjects.iter().cloned());
        order.push_back((batch.last_line, false));
        in_flight.push(send(gateway.clone(), batch));
        if last_drawn.elapsed() >= Duration::from_millis(250) {
            draw(done_through, total_lines, summary, started);
            last_drawn = Instant::now();
        }
    }
    while !in_flight.is_empty() {
        let sent = next_done(&mut in_flight).await?;
        done_through = settle(&sent, &mut busy, &mut order, &mut summary).unwrap_or(done_through);
        write_progress(&args.file, size, done_through)?;
    }
    done_through = done_through.max(total_lines);
    write_progress(&args.file, size, done_through)?;
    draw(done_through, total_lines, summary, started);
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "\nimported {}: {} events stored, {} already stored, {} lines skipped from an earlier run, in {secs:.1} s ({:.0} events/s)",
        args.file.display(),
        summary.stored,
        summary.duplicates,
        summary.skipped_lines,
        (summary.stored + summary.duplicates) as f64 / secs.max(1e-9)
    );
    if summary.position > 0 {
        eprintln!("to read what was imported as soon as it is applied: --min-position {}", summary.position);
    }
    Ok(summary)
}

type Lines =
    std::iter::Peekable<std::iter::Skip<std::iter::Enumerate<std::io::Lines<std::io::BufReader<std::fs::File>>>>>;

/// The next batch of events, or None at the end of the file.
fn next_batch(lines: &mut Lines, max: usize) -> anyhow::Result<Option<Batch>> {
    let mut batch = Batch { lines: Vec::new(), last_line: 0, events: Vec::new(), subjects: HashSet::new() };
    while batch.events.len() < max {
        let Some((index, line)) = lines.next() else { break };
        let number = index as u64 + 1;
        let line = line.with_context(|| format!("line {number} could not be read"))?;
        batch.last_line = number;
        if line.trim().is_empty() {
            continue;
        }
        let event: Value = serde_json::from_str(&line)
            .map_err(|e| anyhow::anyhow!("line {number} is not JSON (column {}): {e}", e.column()))?;
        if let Some(subject) = event.get("subject").and_then(Value::as_str) {
            batch.subjects.insert(subject.to_owned());
        }
        batch.lines.push(number);
        batch.events.push(event);
    }
    Ok((batch.last_line > 0).then_some(batch))
}

async fn next_done(
    in_flight: &mut futures::stream::FuturesUnordered<impl std::future::Future<Output = anyhow::Result<Sent>>>,
) -> anyhow::Result<Sent> {
    use futures::StreamExt as _;
    in_flight.next().await.unwrap_or_else(|| Err(anyhow::anyhow!("no request in flight")))
}

/// Records a stored batch; returns the new stored-from-the-start mark if it moved.
fn settle(
    sent: &Sent,
    busy: &mut HashSet<String>,
    order: &mut VecDeque<(u64, bool)>,
    summary: &mut Summary,
) -> Option<u64> {
    for s in &sent.subjects {
        busy.remove(s);
    }
    summary.stored += sent.stored;
    summary.duplicates += sent.duplicates;
    summary.position = summary.position.max(sent.position);
    if let Some(entry) = order.iter_mut().find(|(last, _)| *last == sent.last_line) {
        entry.1 = true;
    }
    let mut moved = None;
    while let Some(&(last, true)) = order.front() {
        moved = Some(last);
        order.pop_front();
    }
    moved
}

/// Sends a batch, retrying while the gateway says storage is unavailable
/// (a retry with the same ids is always safe).
async fn send(gateway: super::client::RoleClient, batch: Batch) -> anyhow::Result<Sent> {
    let body = serde_json::to_vec(&batch.events)?;
    let response = gateway.publish(&body, 30).await?;
    let status = response.status;
    let answer = response.json();
    if status.is_success() {
        let results = answer["results"].as_array().cloned().unwrap_or_default();
        let duplicates = results.iter().filter(|r| r["duplicate"] == true).count() as u64;
        return Ok(Sent {
            last_line: batch.last_line,
            subjects: batch.subjects,
            stored: results.len() as u64 - duplicates,
            duplicates,
            position: results.iter().filter_map(|r| r["stream_sequence"].as_u64()).max().unwrap_or(0),
        });
    }
    // Name the lines at fault, as the gateway named the events.
    let mut problems = Vec::new();
    for e in answer["errors"].as_array().into_iter().flatten().take(20) {
        let index = e["index"].as_u64().unwrap_or(0) as usize;
        let line = batch.lines.get(index).copied().unwrap_or(0);
        problems.push(format!(
            "line {line} {}: {}",
            e["pointer"].as_str().unwrap_or(""),
            e["message"].as_str().unwrap_or("")
        ));
    }
    anyhow::bail!(
        "the gateway refused the batch of lines {} to {} ({status}): {}{}{}\nnothing of that batch was stored; fix the file and run the import again (stored lines are skipped)",
        batch.lines.first().copied().unwrap_or(0),
        batch.last_line,
        answer["detail"].as_str().unwrap_or(""),
        if problems.is_empty() { "" } else { "\n  " },
        problems.join("\n  ")
    );
}

fn count_lines(file: &Path) -> anyhow::Result<u64> {
    use std::io::Read as _;
    let mut reader = std::fs::File::open(file)?;
    let mut buffer = vec![0u8; 1 << 20];
    let mut lines = 0u64;
    let mut last = b'\n';
    loop {
        let n = reader.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        lines += buffer[..n].iter().filter(|b| **b == b'\n').count() as u64;
        last = buffer[n - 1];
    }
    Ok(if last == b'\n' { lines } else { lines + 1 })
}

fn draw(done: u64, total: u64, summary: Summary, started: Instant) {
    let total = total.max(1);
    let filled = (done.min(total) * 30 / total) as usize;
    let rate = (summary.stored + summary.duplicates) as f64 / started.elapsed().as_secs_f64().max(1e-9);
    let mut err = std::io::stderr().lock();
    let _ = write!(
        err,
        "\r[{}{}] {:>3}%  line {done}/{total}  {rate:.0} events/s ",
        "#".repeat(filled),
        ".".repeat(30 - filled.min(30)),
        done.min(total) * 100 / total
    );
    let _ = err.flush();
}
