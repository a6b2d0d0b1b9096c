//! Signed checkpoints: the head of every subject folded into one root, with
//! the stream position it covers, so an outside party who keeps the roots
//! can later prove that the history up to that position was not rewritten.
//!
//! # The root
//!
//! For stream position `P`, take every subject with at least one event at a
//! stream sequence `<= P`, and its head there (the last of its events in
//! stream order at or before `P`): `subject`, `sequence`, `hash`. Sort them
//! by subject (byte order) and hash the lines `"<subject> <sequence>
//! <hash>\n"` concatenated, with SHA-256. The root of no subjects is the
//! SHA-256 of nothing.
//!
//! That is the flat root of the first checkpoints. Later ones said
//! `"tree": "merkle"`: a Merkle tree over the same lines ([`merkle_root`]),
//! so one subject's head can be proved to be in it with a path of sibling
//! hashes ([`Proof`]) without showing any other subject. Checkpoints made
//! now say `"tree": "hashed-merkle"`: the same tree, with each subject named
//! in its leaf by the SHA-256 of its id ([`subject_name`]), so a proof shows
//! not even the child's own id (an anonymised export carries one; the id is
//! a random UUID, so its digest tells nobody outside anything).
//!
//! # The Merkle tree
//!
//! Leaves are the head lines `"<name> <sequence> <hash>"` sorted by name
//! (byte order), `name` the subject (`merkle`) or the hex SHA-256 of it
//! (`hashed-merkle`), each hashed as SHA-256 of a 0 byte and the line; a
//! node is SHA-256 of a 1 byte, its left and its right child's hashes.
//! Each level pairs neighbours from the left; an odd one out is carried up
//! unchanged. The root of no subjects is the SHA-256 of nothing.
//!
//! # The document
//!
//! ```json
//! {"type": "safeguard.checkpoint", "stream": "SG_EVENTS", "covers": 1042,
//!  "subjects": 57, "events": 1000, "root": "<hex>", "tree": "hashed-merkle", "previous": "<hex>",
//!  "at": "2025-...Z", "hash": "<hex>", "signature": "<base64>"}
//! ```
//!
//! `events` is how many events the stream holds at or before `covers`, so
//! removing one from the middle of a history (which leaves every head as
//! it was) is caught too. `previous` is the `hash` of the checkpoint before it (64 zeros for the
//! first), so the checkpoints form a chain of their own. `hash` and
//! `signature` are made exactly as an event's are ([`crate::chain`]): SHA-256
//! of the RFC 8785 form without them, and the Ed25519 signature of those 32
//! bytes by the gateway's key.

use crate::chain::{self, Digest};
use crate::json::parse_strict;
use ed25519_dalek::{SigningKey, VerifyingKey};
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};

/// The `type` of a checkpoint document.
pub const TYPE: &str = "safeguard.checkpoint";

/// The root over subjects' heads, given in any order.
pub fn root<'a>(heads: impl IntoIterator<Item = (&'a str, u64, &'a Digest)>) -> Digest {
    let mut heads: Vec<(&str, u64, &Digest)> = heads.into_iter().collect();
    heads.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut hasher = Sha256::new();
    for (subject, sequence, hash) in heads {
        hasher.update(format!("{subject} {sequence} {hash}\n").as_bytes());
    }
    Digest(hasher.finalize().into())
}

/// How a checkpoint's root is made from the heads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tree {
    /// One SHA-256 over every head line (the first checkpoints).
    Flat,
    /// A Merkle tree over the head lines ([`merkle_root`]), subjects by id.
    Merkle,
    /// The Merkle tree with each subject named by its digest ([`subject_name`]).
    HashedMerkle,
}

impl Tree {
    /// The root of `heads` made this way.
    pub fn root<'a>(self, heads: impl IntoIterator<Item = (&'a str, u64, &'a Digest)>) -> Digest {
        match self {
            Self::Flat => root(heads),
            Self::Merkle | Self::HashedMerkle => root_of_leaves(leaves(self, heads)),
        }
    }

    /// What a subject is called in this tree's leaves.
    pub fn name(self, subject: &str) -> String {
        match self {
            Self::Flat | Self::Merkle => subject.to_owned(),
            Self::HashedMerkle => subject_name(subject),
        }
    }

    /// As the document says it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Flat => "flat",
            Self::Merkle => "merkle",
            Self::HashedMerkle => "hashed-merkle",
        }
    }
}

/// A subject as a hashed Merkle tree names it: the hex SHA-256 of its id.
pub fn subject_name(subject: &str) -> String {
    Digest::of(subject.as_bytes()).to_string()
}

fn line(name: impl std::fmt::Display, sequence: u64, hash: &Digest) -> String {
    format!("{name} {sequence} {hash}")
}

fn leaf(line: &str) -> Digest {
    let mut hasher = Sha256::new();
    hasher.update([0u8]);
    hasher.update(line.as_bytes());
    Digest(hasher.finalize().into())
}

fn node(left: &Digest, right: &Digest) -> Digest {
    let mut hasher = Sha256::new();
    hasher.update([1u8]);
    hasher.update(left.0);
    hasher.update(right.0);
    Digest(hasher.finalize().into())
}

/// The sorted leaves of `heads` in `tree`, with the names of their subjects.
fn leaves<'a>(tree: Tree, heads: impl IntoIterator<Item = (&'a str, u64, &'a Digest)>) -> Vec<(String, Digest)> {
    let mut named: Vec<(String, u64, &Digest)> = heads.into_iter().map(|(s, seq, h)| (tree.name(s), seq, h)).collect();
    named.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    named
        .into_iter()
        .map(|(name, seq, h)| {
            let l = leaf(&line(&name, seq, h));
            (name, l)
        })
        .collect()
}

/// The level above `level`: neighbours paired from the left, an odd one carried up.
fn up(level: &[Digest]) -> Vec<Digest> {
    level.chunks(2).map(|pair| if let [l, r] = pair { node(l, r) } else { pair[0] }).collect()
}

/// The Merkle root over subjects' heads, given in any order, subjects by id.
pub fn merkle_root<'a>(heads: impl IntoIterator<Item = (&'a str, u64, &'a Digest)>) -> Digest {
    Tree::Merkle.root(heads)
}

fn root_of_leaves(leaves: Vec<(String, Digest)>) -> Digest {
    streamed_root(leaves.into_iter().map(|(_, d)| d))
}

/// The Merkle root of `leaves`, in order, in one pass with a stack as deep
/// as the tree: the same root as pairing each level from the left with an
/// odd one carried up ([`up`]), since those levels make a perfect subtree
/// of each power of two in the count's binary form, largest first, and
/// the root joins them from the right.
fn streamed_root(leaves: impl IntoIterator<Item = Digest>) -> Digest {
    // Perfect subtrees made so far, by height, tallest first.
    let mut stack: Vec<(u32, Digest)> = Vec::new();
    for leaf in leaves {
        let (mut height, mut digest) = (0, leaf);
        while let Some(&(h, left)) = stack.last()
            && h == height
        {
            stack.pop();
            (height, digest) = (h + 1, node(&left, &digest));
        }
        stack.push((height, digest));
    }
    let Some((_, mut root)) = stack.pop() else {
        return Digest(Sha256::digest([]).into());
    };
    while let Some((_, left)) = stack.pop() {
        root = node(&left, &root);
    }
    root
}

/// Every subject's head, each named as a hashed Merkle tree names it and
/// kept in its leaves' order: what a checkpointer follows the stream into.
/// A subject costs about 100 bytes, hashed once when first seen, and the
/// root is one pass over them. (The first checkpointer kept each id as a
/// string and made every root from a sorted, freshly named copy of every
/// head: some 300 bytes a subject at each checkpoint, on top.)
#[derive(Debug, Default, Clone)]
pub struct HashedHeads {
    /// By the subject's digest, whose byte order is its hex name's order.
    heads: std::collections::BTreeMap<[u8; 32], (u64, Digest)>,
}

impl HashedHeads {
    /// Records `subject`'s head, replacing the one before it.
    pub fn set(&mut self, subject: &str, sequence: u64, hash: Digest) {
        self.heads.insert(Digest::of(subject.as_bytes()).0, (sequence, hash));
    }

    /// How many subjects have a head.
    pub fn len(&self) -> usize {
        self.heads.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heads.is_empty()
    }

    /// The root [`Tree::HashedMerkle`] makes of these heads.
    pub fn root(&self) -> Digest {
        streamed_root(self.heads.iter().map(|(name, (sequence, hash))| leaf(&line(Digest(*name), *sequence, hash))))
    }
}

/// Which side a sibling hash sits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Left,
    Right,
}

/// That one subject's head is in a Merkle root: the siblings on the way up.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Proof {
    /// The subject as the tree's leaves name it ([`Tree::name`]).
    pub subject: String,
    pub sequence: u64,
    pub hash: String,
    /// From the leaf up; a level where the node was carried up has none.
    pub path: Vec<(Side, String)>,
}

impl Proof {
    /// The proof that `subject`'s head is in the Merkle root of `heads`
    /// made as `tree`, if it is one of them (a flat root proves no one head).
    pub fn of<'a>(
        tree: Tree,
        heads: impl IntoIterator<Item = (&'a str, u64, &'a Digest)>,
        subject: &str,
    ) -> Option<Self> {
        if tree == Tree::Flat {
            return None;
        }
        let heads: Vec<(&str, u64, &Digest)> = heads.into_iter().collect();
        let (_, sequence, hash) = *heads.iter().find(|(s, _, _)| *s == subject)?;
        let name = tree.name(subject);
        let leaves = leaves(tree, heads.iter().copied());
        let mut index = leaves.iter().position(|(s, _)| *s == name)?;
        let mut level: Vec<Digest> = leaves.into_iter().map(|(_, d)| d).collect();
        let mut path = Vec::new();
        while level.len() > 1 {
            let sibling = index ^ 1;
            if sibling < level.len() {
                let side = if sibling < index { Side::Left } else { Side::Right };
                path.push((side, level[sibling].to_string()));
            }
            level = up(&level);
            index /= 2;
        }
        Some(Self { subject: name, sequence, hash: hash.to_string(), path })
    }

    /// Whether this proof leads from its head to `root`.
    pub fn leads_to(&self, root: &Digest) -> bool {
        let Ok(hash) = Digest::parse(&self.hash) else { return false };
        let mut at = leaf(&line(&self.subject, self.sequence, &hash));
        for (side, sibling) in &self.path {
            let Ok(sibling) = Digest::parse(sibling) else { return false };
            at = match side {
                Side::Left => node(&sibling, &at),
                Side::Right => node(&at, &sibling),
            };
        }
        at == *root
    }
}

/// A checkpoint, as published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub stream: String,
    pub covers: u64,
    pub subjects: u64,
    pub events: u64,
    pub root: Digest,
    /// How the root was made.
    pub tree: Tree,
    pub previous: Digest,
    pub at: chrono::DateTime<chrono::Utc>,
    /// The checkpoint's own hash (what `previous` of the next one names).
    pub hash: Digest,
}

/// Makes and signs a checkpoint document with a hashed Merkle `root`; `counts`
/// is (subjects, events).
pub fn sign(
    stream: &str,
    covers: u64,
    counts: (u64, u64),
    root: &Digest,
    previous: &Digest,
    at: chrono::DateTime<chrono::Utc>,
    key: &SigningKey,
) -> Map<String, Value> {
    let (subjects, events) = counts;
    let doc = json!({
        "type": TYPE,
        "stream": stream,
        "covers": covers,
        "subjects": subjects,
        "events": events,
        "root": root.to_string(),
        "tree": Tree::HashedMerkle.as_str(),
        "previous": previous.to_string(),
        "at": at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    });
    let Value::Object(doc) = doc else { unreachable!("json! of an object is an object") };
    chain::seal(doc, key)
}

/// Why a checkpoint document is not a valid checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("not a checkpoint document: {0}")]
    Malformed(&'static str),
    #[error("the checkpoint's bytes do not match its hash")]
    Altered,
    #[error("the checkpoint is not signed with this key")]
    Forged,
}

/// Reads a published checkpoint and checks its hash and its signature by
/// one of `keys`.
pub fn open(bytes: &[u8], keys: &[VerifyingKey]) -> Result<Checkpoint, CheckpointError> {
    let Ok(Value::Object(doc)) = parse_strict(bytes) else {
        return Err(CheckpointError::Malformed("not a JSON object"));
    };
    if doc.get("type").and_then(Value::as_str) != Some(TYPE) {
        return Err(CheckpointError::Malformed("type is not safeguard.checkpoint"));
    }
    let text = |name: &'static str| doc.get(name).and_then(Value::as_str).ok_or(CheckpointError::Malformed(name));
    let number = |name: &'static str| doc.get(name).and_then(Value::as_u64).ok_or(CheckpointError::Malformed(name));
    let digest =
        |name: &'static str| text(name).and_then(|t| Digest::parse(t).map_err(|_| CheckpointError::Malformed(name)));
    let claimed = digest("hash")?;
    let actual = chain::content_hash(&doc);
    if claimed != actual {
        return Err(CheckpointError::Altered);
    }
    if !chain::signature_valid_any(keys, &actual, text("signature")?) {
        return Err(CheckpointError::Forged);
    }
    let at = chrono::DateTime::parse_from_rfc3339(text("at")?).map_err(|_| CheckpointError::Malformed("at"))?.to_utc();
    Ok(Checkpoint {
        stream: text("stream")?.to_owned(),
        covers: number("covers")?,
        subjects: number("subjects")?,
        events: number("events")?,
        root: digest("root")?,
        tree: match doc.get("tree").and_then(Value::as_str) {
            None => Tree::Flat,
            Some("merkle") => Tree::Merkle,
            Some("hashed-merkle") => Tree::HashedMerkle,
            Some(_) => return Err(CheckpointError::Malformed("tree")),
        },
        previous: digest("previous")?,
        at,
        hash: actual,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_opens_with_the_public_key_only_while_untouched() {
        let key = chain::signing_key_from_seed([7; 32]);
        let h1 = Digest::of(b"one");
        let h2 = Digest::of(b"two");
        let r = Tree::HashedMerkle.root([("b", 2, &h2), ("a", 1, &h1)]);
        assert_eq!(r, Tree::HashedMerkle.root([("a", 1, &h1), ("b", 2, &h2)]), "order of the heads does not matter");
        let at = chrono::DateTime::parse_from_rfc3339("2025-01-14T09:30:00Z").expect("time").to_utc();
        let doc = sign("SG_EVENTS", 10, (2, 3), &r, &Digest::ZERO, at, &key);
        let bytes = serde_json::to_vec(&doc).expect("json");
        let opened = open(&bytes, &[key.verifying_key()]).expect("valid");
        assert_eq!((opened.covers, opened.subjects, opened.root, opened.tree), (10, 2, r, Tree::HashedMerkle));

        let mut altered = doc.clone();
        altered.insert("covers".into(), 11.into());
        assert_eq!(
            open(&serde_json::to_vec(&altered).expect("json"), &[key.verifying_key()]),
            Err(CheckpointError::Altered)
        );
        let other = chain::signing_key_from_seed([8; 32]);
        assert_eq!(open(&bytes, &[other.verifying_key()]), Err(CheckpointError::Forged));
        assert!(open(&bytes, &[other.verifying_key(), key.verifying_key()]).is_ok(), "any listed key will do");
    }

    /// The levels as the module's documentation defines them, one at a time.
    fn level_by_level(leaves: &[Digest]) -> Digest {
        let mut level = leaves.to_vec();
        if level.is_empty() {
            return Digest(Sha256::digest([]).into());
        }
        while level.len() > 1 {
            level = up(&level);
        }
        level[0]
    }

    #[test]
    fn the_streamed_root_is_the_levels_root_for_every_count() {
        for n in 0..300u32 {
            let leaves: Vec<Digest> = (0..n).map(|i| Digest::of(&i.to_be_bytes())).collect();
            assert_eq!(streamed_root(leaves.iter().copied()), level_by_level(&leaves), "{n} leaves");
        }
    }

    proptest::proptest! {
        /// What the checkpointer keeps makes the root the verifier makes
        /// from the heads by name, however the stream delivered them.
        #[test]
        fn hashed_heads_make_the_hashed_merkle_root(
            delivered in proptest::collection::vec((0u16..400, 1u64..1_000, proptest::prelude::any::<[u8; 32]>()), 0..600)
        ) {
            let mut kept = HashedHeads::default();
            let mut by_name = std::collections::HashMap::new();
            for (subject, sequence, hash) in &delivered {
                let subject = format!("child-{subject}");
                kept.set(&subject, *sequence, Digest(*hash));
                by_name.insert(subject, (*sequence, Digest(*hash)));
            }
            let expected = Tree::HashedMerkle.root(by_name.iter().map(|(s, (seq, h))| (s.as_str(), *seq, h)));
            proptest::prop_assert_eq!(kept.len(), by_name.len());
            proptest::prop_assert_eq!(kept.root(), expected);
        }
    }

    #[test]
    fn every_subjects_head_is_proved_in_the_merkle_root_and_no_altered_head_is() {
        for tree in [Tree::Merkle, Tree::HashedMerkle] {
            for n in 0..12usize {
                let names: Vec<String> = (0..n).map(|i| format!("child-{i:02}")).collect();
                let hashes: Vec<Digest> = (0..n).map(|i| Digest::of(format!("h{i}").as_bytes())).collect();
                let heads: Vec<(&str, u64, &Digest)> =
                    names.iter().zip(&hashes).enumerate().map(|(i, (s, h))| (s.as_str(), i as u64 + 1, h)).collect();
                let r = tree.root(heads.iter().copied());
                for (subject, sequence, _) in &heads {
                    let proof = Proof::of(tree, heads.iter().copied(), subject).expect("a proof");
                    assert!(proof.leads_to(&r), "{n} heads: {subject}");
                    assert_eq!(proof.subject, tree.name(subject));
                    if tree == Tree::HashedMerkle {
                        assert!(
                            !serde_json::to_string(&proof).expect("json").contains(*subject),
                            "the id is not shown"
                        );
                    }
                    let mut later = proof.clone();
                    later.sequence = sequence + 1;
                    assert!(!later.leads_to(&r), "a head moved on is not in the root");
                    let mut other = proof.clone();
                    other.hash = Digest::of(b"other").to_string();
                    assert!(!other.leads_to(&r), "an altered head is not in the root");
                }
                assert!(Proof::of(tree, heads.iter().copied(), "nobody").is_none());
            }
        }
        let h = Digest::of(b"x");
        assert_ne!(merkle_root([("a", 1, &h)]), root([("a", 1, &h)]), "the trees differ");
        assert_ne!(merkle_root([("a", 1, &h)]), Tree::HashedMerkle.root([("a", 1, &h)]), "the trees differ");
        assert!(Proof::of(Tree::Flat, [("a", 1, &h)], "a").is_none(), "a flat root proves no one head");
    }
}
