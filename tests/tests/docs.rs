//! The documentation's links resolve: every relative link in README.md,
//! ARCHITECTURE.md and docs/ names a file that exists and, where it names
//! a heading, a heading that exists (GitHub's anchor rule). The reference
//! pages were split out of the README; this keeps them from drifting apart.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The pages a newcomer reads: the README, the code map and docs/*.md.
fn pages() -> Vec<PathBuf> {
    let root = root();
    let mut pages = vec![root.join("README.md"), root.join("ARCHITECTURE.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/ exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    pages.extend(docs);
    pages
}

/// GitHub's anchor for a heading: lower case, punctuation other than `-`
/// and `_` dropped, spaces as hyphens.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a page's headings, skipping fenced code (where `#` is a
/// shell comment).
fn anchors(text: &str) -> BTreeSet<String> {
    let mut fenced = false;
    let mut out = BTreeSet::new();
    for line in text.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
        } else if !fenced && line.starts_with('#') {
            out.insert(anchor(line.trim_start_matches('#')));
        }
    }
    out
}

/// The targets of inline links `[text](target)`.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("](") {
        let after = &rest[at + 2..];
        let end = after.find(')').unwrap_or(after.len());
        out.push(after[..end].to_owned());
        rest = &after[end..];
    }
    out
}

#[test]
fn every_relative_link_and_anchor_resolves() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for page in pages() {
        let text = std::fs::read_to_string(&page).expect("readable page");
        for link in links(&text) {
            if link.contains("://") || link.starts_with("mailto:") || link.contains(' ') {
                continue;
            }
            checked += 1;
            let (path, fragment) = link.split_once('#').unwrap_or((link.as_str(), ""));
            let target =
                if path.is_empty() { page.clone() } else { page.parent().expect("a page has a folder").join(path) };
            if !target.exists() {
                broken.push(format!("{}: {link}: no such file", page.display()));
                continue;
            }
            if !fragment.is_empty() && target.extension().is_some_and(|x| x == "md") {
                let heads = anchors(&std::fs::read_to_string(&target).expect("readable target"));
                if !heads.contains(fragment) {
                    broken.push(format!("{}: {link}: no such heading", page.display()));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
    assert!(checked > 20, "only {checked} links found: is the link parser still right?");
}

#[test]
fn the_readme_is_an_introduction_and_every_docs_page_is_linked_from_it() {
    let root = root();
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    assert!(
        readme.lines().count() < 200,
        "README.md has {} lines: reference material belongs in docs/",
        readme.lines().count()
    );
    for page in pages().iter().filter(|p| p.parent().is_some_and(|d| d.ends_with("docs"))) {
        let name = format!("docs/{}", page.file_name().expect("a file").to_string_lossy());
        assert!(readme.contains(&format!("]({name})")), "README.md does not link {name}");
    }
}

#[test]
fn anchors_follow_githubs_rule() {
    assert_eq!(anchor(" Verification, checkpoints and keys"), "verification-checkpoints-and-keys");
    assert_eq!(anchor(" The vocabulary (`events`)"), "the-vocabulary-events");
    assert_eq!(anchor(" Reading: the query role"), "reading-the-query-role");
}
