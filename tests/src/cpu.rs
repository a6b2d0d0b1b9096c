//! Where a measurement's CPU went, process by process, from `/proc`.
//!
//! Every process of a benchmark shares the machine's cores, so a row's rate
//! is bound either by those cores (the CPU all processes spend on an event,
//! times the rate, fills them) or by waiting (round trips and fsyncs, with
//! cores idle). [`Meter`] tells which, and whose CPU it is: it reads the
//! machine's busy time from `/proc/stat` and each watched process's user
//! and system time from `/proc/<pid>/stat`, before and after.
//!
//! PostgreSQL is a process per connection, so it is watched by command
//! name; a backend that exits during the measurement has its time added to
//! the postmaster's children's time, which is counted too.

use std::time::Instant;

/// Which processes a group is.
#[derive(Debug, Clone)]
pub enum Which {
    /// These process ids (a role, a nats-server).
    Pids(Vec<u32>),
    /// Every process whose command (`/proc/<pid>/comm`) is this, with the
    /// time of its exited children (PostgreSQL's backends).
    Command(&'static str),
    /// The measuring process itself (a load generator, or work it does in process).
    This,
    /// The measuring process's children that exited and were waited for
    /// (a `safeguard rebuild` it ran to the end: once reaped, a process's
    /// own `/proc` entry is gone and its time is its parent's).
    ExitedChildren,
}

/// CPU time watched from a start, by group.
#[derive(Debug)]
pub struct Meter {
    groups: Vec<(&'static str, Which)>,
    ticks: Vec<u64>,
    machine: Machine,
    started: Instant,
}

/// CPU seconds a measurement cost, by group, and what the machine had.
#[derive(Debug, Clone)]
pub struct Split {
    /// Seconds of CPU by group, in the order given, then `other`: what the
    /// machine was busy with that no group accounts for.
    pub by: Vec<(&'static str, f64)>,
    /// Seconds of CPU the whole machine was busy.
    pub busy: f64,
    /// Seconds of CPU the machine sat idle waiting on the disk.
    pub iowait: f64,
    /// Seconds of CPU the machine had (wall time times cores).
    pub capacity: f64,
}

impl Meter {
    pub fn start(groups: Vec<(&'static str, Which)>) -> Self {
        let ticks = groups.iter().map(|(_, which)| ticks_of(which)).collect();
        Self { groups, ticks, machine: Machine::now(), started: Instant::now() }
    }

    pub fn stop(&self) -> Split {
        let machine = Machine::now();
        let elapsed = self.started.elapsed().as_secs_f64();
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get) as f64;
        let total = machine.total.saturating_sub(self.machine.total) as f64;
        // The tick rate (USER_HZ) from the machine's own count over the wall
        // time, rather than assumed.
        let hz = if elapsed > 0.0 { total / (elapsed * cores) } else { 100.0 };
        let seconds = |ticks: u64| if hz > 0.0 { ticks as f64 / hz } else { 0.0 };
        let mut by: Vec<(&'static str, f64)> = self
            .groups
            .iter()
            .zip(&self.ticks)
            .map(|((name, which), before)| (*name, seconds(ticks_of(which).saturating_sub(*before))))
            .collect();
        let busy = seconds(machine.busy.saturating_sub(self.machine.busy));
        let accounted: f64 = by.iter().map(|(_, s)| s).sum();
        by.push(("other", (busy - accounted).max(0.0)));
        Split {
            by,
            busy,
            iowait: seconds(machine.iowait.saturating_sub(self.machine.iowait)),
            capacity: seconds(machine.total.saturating_sub(self.machine.total)),
        }
    }
}

impl Split {
    /// Microseconds of CPU an event, by group (then `other`).
    pub fn per_event_us(&self, events: f64) -> Vec<(&'static str, f64)> {
        self.by.iter().map(|(name, s)| (*name, s * 1e6 / events.max(1.0))).collect()
    }

    /// The share of the machine's cores that was busy.
    pub fn busy_share(&self) -> f64 {
        if self.capacity > 0.0 { self.busy / self.capacity } else { 0.0 }
    }

    /// The share of the machine's cores idle waiting on the disk.
    pub fn iowait_share(&self) -> f64 {
        if self.capacity > 0.0 { self.iowait / self.capacity } else { 0.0 }
    }

    /// The rate the machine's cores would allow if nothing waited: its
    /// cores over the CPU all processes spent an event.
    pub fn ceiling(&self, events: f64) -> f64 {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get) as f64;
        if self.busy > 0.0 { cores * events / self.busy } else { f64::INFINITY }
    }
}

#[derive(Debug, Clone, Copy)]
struct Machine {
    busy: u64,
    iowait: u64,
    total: u64,
}

impl Machine {
    fn now() -> Self {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        // cpu  user nice system idle iowait irq softirq steal ...
        let t: Vec<u64> =
            stat.lines().next().unwrap_or("").split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
        let at = |i: usize| t.get(i).copied().unwrap_or(0);
        let total: u64 = (0..8).map(at).sum();
        Self { busy: total - at(3) - at(4), iowait: at(4), total }
    }
}

fn ticks_of(which: &Which) -> u64 {
    match which {
        Which::Pids(pids) => pids.iter().map(|pid| process_ticks(&pid.to_string(), Times::Own)).sum(),
        Which::This => process_ticks("self", Times::Own),
        Which::ExitedChildren => process_ticks("self", Times::Children),
        Which::Command(command) => std::fs::read_dir("/proc")
            .map(|dir| {
                dir.filter_map(Result::ok)
                    .map(|entry| entry.file_name().to_string_lossy().into_owned())
                    .filter(|name| name.bytes().all(|b| b.is_ascii_digit()))
                    .filter(|pid| {
                        std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == *command)
                    })
                    .map(|pid| process_ticks(&pid, Times::Both))
                    .sum()
            })
            .unwrap_or(0),
    }
}

#[derive(Debug, Clone, Copy)]
enum Times {
    /// The process's own (all its threads).
    Own,
    /// Those of its children it has waited for.
    Children,
    Both,
}

/// User and system ticks of a process.
fn process_ticks(pid: &str, times: Times) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0 };
    // The command may hold spaces and parentheses: fields start after the last ')'.
    let Some(rest) = stat.rfind(')').map(|at| &stat[at + 1..]) else { return 0 };
    let fields: Vec<u64> = rest.split_whitespace().skip(11).take(4).filter_map(|f| f.parse().ok()).collect();
    // utime stime cutime cstime (fields 14 to 17 of the whole line).
    let range = match times {
        Times::Own => 0..2,
        Times::Children => 2..4,
        Times::Both => 0..4,
    };
    fields.get(range).map_or(0, |f| f.iter().sum())
}

/// A sampling profile of one process by `perf record`, for the length of a
/// measurement: where inside it the CPU went, by function.
#[derive(Debug)]
pub struct Profile {
    perf: std::process::Child,
    file: tempfile::TempPath,
}

impl Profile {
    /// Starts sampling `pid` (499 times a second, so the profile costs the
    /// measurement little), once perf is attached; `None` where `perf`
    /// cannot run here.
    pub fn start(pid: u32) -> Option<Self> {
        let file = tempfile::NamedTempFile::new().ok()?.into_temp_path();
        let mut perf = std::process::Command::new("perf")
            .args(["record", "-q", "-F", "499", "-p", &pid.to_string(), "-o"])
            .arg(&file)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok()?;
        // perf writes its file's header once it has attached to the
        // process; the work must not start before.
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        while std::fs::metadata(&file).map_or(0, |m| m.len()) == 0 {
            if !matches!(perf.try_wait(), Ok(None)) || Instant::now() > deadline {
                let _ = perf.kill();
                let _ = perf.wait();
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        Some(Self { perf, file })
    }

    /// Stops sampling and gives the functions with at least `at_least` per
    /// cent of the samples, largest first, as (per cent, function).
    pub fn stop(mut self, at_least: f64) -> Vec<(f64, String)> {
        let _ =
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.perf.id() as i32), nix::sys::signal::Signal::SIGINT);
        let _ = self.perf.wait();
        let Ok(output) = std::process::Command::new("perf")
            .args(["report", "-q", "--stdio", "--no-children", "--sort", "symbol", "-i"])
            .arg(&self.file)
            .output()
        else {
            return Vec::new();
        };
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| {
                // "    12.34%  [.] curve25519_dalek::backend::...::mul"
                let (share, rest) = line.trim().split_once('%')?;
                let share: f64 = share.trim().parse().ok()?;
                // perf pads the column and may add a "-" or two after it.
                let function = rest.trim().trim_start_matches("[.]").trim_start_matches("[k]").trim();
                let function = function.trim_end_matches(|c: char| c == '-' || c.is_whitespace());
                // Rust's symbols end in a hash that says nothing to a reader.
                let function = match function.rsplit_once("::h") {
                    Some((name, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => name,
                    _ => function,
                };
                (share >= at_least).then(|| (share, function.to_owned()))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_in_this_process_is_counted_to_it() {
        let meter = Meter::start(vec![("this", Which::This)]);
        // Half a second of arithmetic the optimiser cannot drop.
        let until = Instant::now() + std::time::Duration::from_millis(500);
        let mut x = 0u64;
        while Instant::now() < until {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        let split = meter.stop();
        let this = split.by[0].1;
        // However busy the machine is with other tests, the loop got some
        // of a core, never more than one, and the machine was busy for it.
        assert!((0.05..=0.7).contains(&this), "{split:?}");
        assert!(split.busy >= this * 0.9, "{split:?}");
        assert!(split.capacity >= 0.45, "{split:?}");
        assert_eq!(split.by.last().map(|(n, _)| *n), Some("other"));
    }
}
