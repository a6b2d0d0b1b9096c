//! Schemathesis (PyPI, pinned; installed into `.venv` by `ops/test`)
//! against both roles' OpenAPI documents as they serve them, with every
//! check on: each operation is called with cases generated from its
//! documented parameters and bodies, valid and invalid, and every answer is
//! held to the document (its status, content type, headers and schema) and
//! to the data (what the schema allows is taken, what it forbids refused,
//! no server error). Settings: `tests/contract/schemathesis.toml`.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use tests::gateway::tokens;
use tests::system::System;

/// Cases per operation and phase: enough to reach every documented status,
/// few enough to keep the suite quick.
const MAX_EXAMPLES: &str = "25";

/// The longest one role's run may take; it takes about 15 s.
const TIME_LIMIT: Duration = Duration::from_secs(300);

fn schemathesis(location: &str, base: &str, token: &str, report: &Path) -> Output {
    let root = tests::workspace_root();
    let said = report.with_extension("out");
    let mut child = Command::new(root.join(".venv/bin/schemathesis"))
        .arg("--config-file")
        .arg(root.join("tests/contract/schemathesis.toml"))
        .args(["--no-color", "run", location, "--url", base, "--checks", "all", "--max-examples", MAX_EXAMPLES])
        .args(["--seed", "20261206", "--generation-database", "none", "--workers", "2", "--request-timeout", "10"])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(["--header", "X-Acting-User: contract-test", "--header", "X-Purpose: contract-test"])
        .args(["--report", "junit", "--report-junit-path"])
        .arg(report)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        // Schemathesis keeps a cache where it runs: in the test's own directory, not the repository.
        .current_dir(report.parent().expect("the report's directory"))
        // To a file, not a pipe: a run with many failures writes more than
        // a pipe holds, and would wait for a reader while this one waits for it.
        .stdout(Stdio::from(std::fs::File::create(&said).expect("an output file")))
        .stderr(Stdio::from(std::fs::File::create(said.with_extension("err")).expect("an output file")))
        .spawn()
        .expect("schemathesis in .venv (ops/test installs it)");
    // Bounded in time as well as in cases: a run that hangs fails the test.
    let deadline = Instant::now() + TIME_LIMIT;
    while child.try_wait().expect("schemathesis").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("schemathesis ran past {TIME_LIMIT:?} against {base}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = child.wait().expect("schemathesis");
    let read = |path: &Path| std::fs::read(path).unwrap_or_default();
    Output { status, stdout: read(&said), stderr: read(&said.with_extension("err")) }
}

fn said(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_nothing_in_either_role() {
    let sys = System::start().await;
    let dir = tempfile::tempdir().expect("a directory");
    let roles = [
        ("gateway", sys.gateway.url("/openapi.json"), sys.gateway.url("")),
        ("query", sys.query.url("/openapi.json"), sys.query.url("")),
    ];
    // Both roles at once: each run waits on its server more than it computes.
    let runs = roles.map(|(role, location, base)| {
        let report = dir.path().join(format!("{role}.xml"));
        tokio::task::spawn_blocking(move || {
            (role, schemathesis(&location, base.trim_end_matches('/'), tokens::ADMIN, &report))
        })
    });
    let mut failed = Vec::new();
    for run in runs {
        let (role, out) = run.await.expect("schemathesis");
        let said = said(&out);
        // A failing case can be a 1,001-event batch: keep the summary.
        let said = if said.len() > 40_000 {
            format!(
                "{}\n…\n{}",
                &said[..said.floor_char_boundary(20_000)],
                &said[said.ceil_char_boundary(said.len() - 20_000)..]
            )
        } else {
            said
        };
        eprintln!("{role}:\n{said}");
        if !out.status.success() {
            failed.push(role);
        }
    }
    assert!(failed.is_empty(), "schemathesis found failures in {failed:?} (above)");
}
