//! The architecture's invariants, as facts about dependencies
//! (ARCHITECTURE.md, "Invariants"): read from `cargo metadata`, so a
//! change to any Cargo.toml that breaks one fails the suite.
//!
//! Only normal dependencies count (what a crate's code may call), and they
//! count transitively: `gateway` must not reach sqlx through any path.

use std::collections::{BTreeMap, BTreeSet};

/// Each package's normal dependencies by name, from the resolved graph.
struct Graph {
    deps: BTreeMap<String, BTreeSet<String>>,
}

impl Graph {
    /// The graph, read once for all the tests here.
    fn load() -> &'static Self {
        static GRAPH: std::sync::OnceLock<Graph> = std::sync::OnceLock::new();
        GRAPH.get_or_init(Self::read)
    }

    fn read() -> Self {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        // The host's graph: what is built here (other platforms' crates,
        // such as Windows' or Android's, are not ours to check).
        let host = format!("{}-unknown-linux-gnu", std::env::consts::ARCH);
        let out = std::process::Command::new(cargo)
            .args(["metadata", "--format-version", "1", "--locked", "--filter-platform", &host])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("run cargo metadata");
        assert!(out.status.success(), "cargo metadata failed: {}", String::from_utf8_lossy(&out.stderr));
        let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON");
        let names: BTreeMap<&str, &str> = meta["packages"]
            .as_array()
            .expect("packages")
            .iter()
            .map(|p| (p["id"].as_str().expect("id"), p["name"].as_str().expect("name")))
            .collect();
        let mut deps = BTreeMap::new();
        for node in meta["resolve"]["nodes"].as_array().expect("a resolved graph") {
            let name = names[node["id"].as_str().expect("id")].to_owned();
            let normal: BTreeSet<String> = node["deps"]
                .as_array()
                .expect("deps")
                .iter()
                .filter(|d| d["dep_kinds"].as_array().expect("dep_kinds").iter().any(|k| k["kind"].is_null()))
                .map(|d| names[d["pkg"].as_str().expect("pkg")].to_owned())
                .collect();
            deps.entry(name).or_insert_with(BTreeSet::new).extend(normal);
        }
        Self { deps }
    }

    fn direct(&self, package: &str) -> &BTreeSet<String> {
        self.deps.get(package).unwrap_or_else(|| panic!("{package} is not in the workspace's graph"))
    }

    /// Everything `package`'s code can reach.
    fn reach(&self, package: &str) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![package.to_owned()];
        while let Some(p) = todo.pop() {
            for d in self.direct(&p) {
                if seen.insert(d.clone()) {
                    todo.push(d.clone());
                }
            }
        }
        seen
    }

    fn never_reaches(&self, package: &str, forbidden: &[&str], why: &str) {
        let reach = self.reach(package);
        let found: Vec<&&str> = forbidden.iter().filter(|f| reach.contains(**f)).collect();
        assert!(found.is_empty(), "{package} depends on {found:?}, but {why}");
    }
}

/// Our crates, in the order they may depend on each other.
const OURS: [&str; 7] = ["events", "casework", "projections", "platform", "gateway", "query", "safeguard"];

#[test]
fn the_vocabulary_and_the_domain_rules_do_no_io() {
    let g = Graph::load();
    let io = ["sqlx", "tokio", "async-nats", "axum", "reqwest", "mio"];
    g.never_reaches("events", &io, "the vocabulary is pure");
    g.never_reaches("casework", &io, "the domain rules (folds, indicators, returns) are pure");
    for ours in OURS.iter().filter(|o| **o != "events") {
        assert!(!g.direct("events").contains(*ours), "events must not depend on {ours}");
    }
    assert_eq!(
        g.direct("casework").iter().filter(|d| OURS.contains(&d.as_str())).collect::<Vec<_>>(),
        ["events"],
        "casework builds on the vocabulary only"
    );
}

#[test]
fn the_gateway_never_touches_postgresql() {
    let g = Graph::load();
    g.never_reaches("gateway", &["sqlx", "projections", "query"], "the gateway never touches PostgreSQL");
    g.never_reaches("platform", &["sqlx", "projections"], "what every role stands on has no database in it");
}

#[test]
fn only_the_read_side_runs_sql() {
    let g = Graph::load();
    let direct: Vec<&str> = OURS.iter().copied().filter(|o| g.direct(o).contains("sqlx")).collect();
    assert_eq!(direct, ["projections"], "only projections may depend on sqlx");
}

#[test]
fn the_read_side_knows_nothing_of_the_roles_above_it() {
    let g = Graph::load();
    g.never_reaches(
        "projections",
        &["platform", "gateway", "query", "safeguard", "axum"],
        "the read models are built from the stream alone",
    );
    g.never_reaches("query", &["gateway", "safeguard"], "the query role reads; it does not publish events");
}
