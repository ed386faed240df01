//! A certified contest's public bulletin, and the Merkle tree over it
//! (RFC 9162's hashing), so anyone can recount the result and a voter can
//! check that their vote is in it. Format: `docs/bulletin.md`.
//!
//! One line per vote of the contest, sorted by `leaf`, each the compact JSON
//! `{"leaf":"<64 hex>","band":"<band as counted>","status":"<status>"}` with
//! `leaf = SHA-256("bandvote-leaf-v1" 0x00 contest 0x00 vote_id)`: the vote
//! id (the voter's receipt) is never published, only its hash under the
//! contest. The tree's leaves are the lines' bytes (without the newline):
//! leaf hash `SHA-256(0x00 ‖ line)`, node hash `SHA-256(0x01 ‖ left ‖
//! right)`, the tree split at the largest power of two below the size, as
//! RFC 9162 §2.1.1 defines it; a leaf cannot pass for a node.

use std::collections::BTreeMap;

use sha2::{Digest as _, Sha256};

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// The domain of a leaf id.
const LEAF_DOMAIN: &[u8] = b"bandvote-leaf-v1";

/// A vote's public id in contest `contest`'s bulletin (hex).
pub fn leaf_id(contest: &str, vote_id: &str) -> String {
    let mut h = Sha256::new();
    h.update(LEAF_DOMAIN);
    h.update([0]);
    h.update(contest.as_bytes());
    h.update([0]);
    h.update(vote_id.as_bytes());
    hex(&h.finalize().into())
}

/// Lowercase hex.
pub fn hex(h: &Hash) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parse 64 hex digits.
pub fn unhex(s: &str) -> Option<Hash> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// One line of the bulletin.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Line {
    pub leaf: String,
    pub band: String,
    pub status: String,
}

impl Line {
    /// The line as published (compact JSON, fields in this order, no newline).
    pub fn text(&self) -> String {
        serde_json::to_string(self).expect("a line serialises")
    }
}

/// RFC 9162 leaf hash of `data`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0]);
    h.update(data);
    h.finalize().into()
}

/// RFC 9162 node hash.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of the empty tree: SHA-256 of nothing.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The tree's root built one leaf at a time in O(log n) memory (a stack of
/// the roots of complete subtrees, merged right to left at the end, which is
/// RFC 9162's split at the largest power of two).
#[derive(Debug, Default, Clone)]
pub struct RootBuilder {
    /// (height, root) of complete subtrees, left to right.
    stack: Vec<(u32, Hash)>,
    size: u64,
}

impl RootBuilder {
    pub fn push(&mut self, leaf: Hash) {
        let mut node = (0, leaf);
        while let Some(&(height, left)) = self.stack.last() {
            if height != node.0 {
                break;
            }
            self.stack.pop();
            node = (height + 1, node_hash(&left, &node.1));
        }
        self.stack.push(node);
        self.size += 1;
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn root(&self) -> Hash {
        let mut it = self.stack.iter().rev();
        let Some(&(_, mut acc)) = it.next() else { return empty_root() };
        for (_, left) in it {
            acc = node_hash(left, &acc);
        }
        acc
    }
}

/// The root over `leaves` (leaf hashes).
pub fn root(leaves: &[Hash]) -> Hash {
    let mut b = RootBuilder::default();
    for l in leaves {
        b.push(*l);
    }
    b.root()
}

/// The largest power of two below `n` (n ≥ 2).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// RFC 9162 §2.1.3.1 inclusion proof (audit path) of leaf `index` among `leaves`.
pub fn inclusion_proof(leaves: &[Hash], index: usize) -> Vec<Hash> {
    fn path(leaves: &[Hash], m: usize, out: &mut Vec<Hash>) {
        let n = leaves.len();
        if n <= 1 {
            return;
        }
        let k = split(n);
        if m < k {
            path(&leaves[..k], m, out);
            out.push(root(&leaves[k..]));
        } else {
            path(&leaves[k..], m - k, out);
            out.push(root(&leaves[..k]));
        }
    }
    let mut out = Vec::new();
    if index < leaves.len() {
        path(leaves, index, &mut out);
    }
    out
}

/// RFC 9162 §2.1.3.2: does `path` prove leaf hash `leaf` at `index` in a tree of `size` with `root`?
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, path: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf;
    for p in path {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    sn == 0 && r == *root
}

/// What a bulletin adds up to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub lines: u64,
    pub root: String,
    /// Counted votes per band.
    pub by_band: BTreeMap<String, i64>,
    /// Votes per status (counted included).
    pub by_status: BTreeMap<String, i64>,
}

/// Why a bulletin does not check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BulletinError {
    #[error("line {line}: {problem}")]
    Line { line: u64, problem: String },
    #[error("root: the bulletin's is {computed}, the certificate says {expected}")]
    Root { computed: String, expected: String },
    #[error("{0}")]
    Io(String),
}

/// Recount a bulletin read line by line (bounded memory): each line parses,
/// is in its canonical form and in strictly increasing `leaf` order; the
/// root and the tallies are computed as it goes.
pub fn recount(lines: impl IntoIterator<Item = std::io::Result<String>>) -> Result<Summary, BulletinError> {
    let mut builder = RootBuilder::default();
    let mut s = Summary::default();
    let mut last: Option<String> = None;
    for (i, text) in lines.into_iter().enumerate() {
        let n = i as u64 + 1;
        let bad = |problem: String| BulletinError::Line { line: n, problem };
        let text = text.map_err(|e| bad(e.to_string()))?;
        let line: Line = serde_json::from_str(&text).map_err(|e| bad(format!("not a bulletin line: {e}")))?;
        if line.text() != text {
            return Err(bad("not in canonical form (compact JSON: leaf, band, status)".into()));
        }
        if unhex(&line.leaf).is_none() || line.leaf.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(bad(format!("leaf {:?} is not 64 lowercase hex digits", line.leaf)));
        }
        if last.as_ref().is_some_and(|l| *l >= line.leaf) {
            return Err(bad("leaves out of order or repeated".into()));
        }
        builder.push(leaf_hash(text.as_bytes()));
        *s.by_status.entry(line.status.clone()).or_default() += 1;
        if line.status == "counted" {
            *s.by_band.entry(line.band.clone()).or_default() += 1;
        }
        last = Some(line.leaf);
        s.lines = n;
    }
    s.root = hex(&builder.root());
    Ok(s)
}

/// Check the bulletin at `path` against the `root` (hex) a certificate
/// states; with `receipt` (contest id, vote id), also find that vote's line
/// (`None`: not in the bulletin). Reads the file line by line (twice with a
/// receipt): bounded memory whatever its size.
pub fn verify_file(path: &std::path::Path, root: &str, receipt: Option<(&str, &str)>) -> Result<(Summary, Option<Line>), BulletinError> {
    use std::io::BufRead as _;
    let open = || std::fs::File::open(path).map(std::io::BufReader::new).map_err(|e| BulletinError::Io(format!("{}: {e}", path.display())));
    let summary = recount(open()?.lines())?;
    if summary.root != root.to_ascii_lowercase() {
        return Err(BulletinError::Root { computed: summary.root, expected: root.to_owned() });
    }
    let found = match receipt {
        None => None,
        Some((contest, vote_id)) => {
            let leaf = leaf_id(contest, vote_id);
            open()?.lines().map_while(Result::ok).filter_map(|t| serde_json::from_str::<Line>(&t).ok()).find(|l| l.leaf == leaf)
        }
    };
    Ok((summary, found))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(format!("line {i}").as_bytes())).collect()
    }

    /// The root by RFC 9162's recursive definition, to check the builder.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split(n);
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    #[test]
    fn the_builder_is_rfc_9162s_tree_and_every_proof_verifies() {
        for n in 0..40 {
            let l = leaves(n);
            assert_eq!(root(&l), mth(&l), "size {n}");
            let r = root(&l);
            for i in 0..n {
                let p = inclusion_proof(&l, i);
                assert!(p.len() <= 6, "O(log n)");
                assert!(verify_inclusion(&l[i], i as u64, n as u64, &p, &r), "leaf {i} of {n}");
                assert!(!verify_inclusion(&l[(i + 1) % n], i as u64, n as u64, &p, &r) || n == 1, "another leaf at {i} of {n}");
                assert!(!verify_inclusion(&l[i], i as u64, n as u64, &p, &empty_root()), "another root");
            }
        }
    }

    #[test]
    fn a_leaf_cannot_pass_for_a_node() {
        let l = leaves(2);
        let node = node_hash(&l[0], &l[1]);
        let mut as_leaf = vec![1u8];
        as_leaf.extend_from_slice(&l[0]);
        as_leaf.extend_from_slice(&l[1]);
        assert_ne!(leaf_hash(&as_leaf), node);
    }

    #[test]
    fn empty_and_single_trees_match_the_rfc() {
        assert_eq!(hex(&empty_root()), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(hex(&leaf_hash(b"")), "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d");
    }

    fn line(contest: &str, id: &str, band: &str, status: &str) -> Line {
        Line { leaf: leaf_id(contest, id), band: band.into(), status: status.into() }
    }

    #[test]
    fn a_bulletin_recounts_and_names_a_bad_line() {
        let mut lines = [line("c", "a", "Maná", "counted"), line("c", "b", "Maná", "over_limit"), line("c", "d", "Caifanes", "counted")];
        lines.sort_by(|x, y| x.leaf.cmp(&y.leaf));
        let texts: Vec<String> = lines.iter().map(Line::text).collect();
        let s = recount(texts.iter().cloned().map(Ok)).unwrap();
        assert_eq!(s.lines, 3);
        assert_eq!(s.by_band, BTreeMap::from([("Caifanes".into(), 1), ("Maná".into(), 1)]));
        assert_eq!(s.by_status, BTreeMap::from([("counted".into(), 2), ("over_limit".into(), 1)]));
        assert_eq!(s.root, hex(&root(&texts.iter().map(|t| leaf_hash(t.as_bytes())).collect::<Vec<_>>())));
        let mut swapped = texts.clone();
        swapped.swap(0, 1);
        assert!(matches!(recount(swapped.into_iter().map(Ok)), Err(BulletinError::Line { line: 2, .. })));
        let mut spaced = texts.clone();
        spaced[2] = spaced[2].replace(":", ": ");
        assert!(matches!(recount(spaced.into_iter().map(Ok)), Err(BulletinError::Line { line: 3, .. })));
        assert_ne!(leaf_id("c", "ab"), leaf_id("ca", "b"), "the separator keeps contest and vote id apart");
    }

    /// `tests/fixtures/bulletin-sample.*` (what `tests/python/test_bulletin.py`,
    /// a verifier written from `docs/bulletin.md` alone, checks) is exactly
    /// what this code writes. `BANDVOTE_WRITE_FIXTURES=1` writes it again.
    #[test]
    fn the_sample_bulletin_in_the_fixtures_is_what_this_code_writes() {
        let contest = "final-2026";
        let votes = [
            ("v-001", "Maná", "counted"),
            ("v-002", "Caifanes", "over_limit"),
            ("v-003", "Café Tacvba", "counted"),
            ("v-004", "Maná", "replaced"),
            ("v-005", "Los \"Rockers\" / 2", "late"),
            ("v-006", "Maná", "counted"),
            ("v-007", "Aterciopelados", "counted"),
        ];
        let mut lines: Vec<Line> = votes.iter().map(|(id, band, status)| line(contest, id, band, status)).collect();
        lines.sort_by(|a, b| a.leaf.cmp(&b.leaf));
        let text: String = lines.iter().map(|l| l.text() + "\n").collect();
        let s = recount(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
        let meta = serde_json::json!({ "contest": contest, "root": s.root, "by_band": s.by_band, "by_status": s.by_status, "receipts": votes });
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
        if std::env::var_os("BANDVOTE_WRITE_FIXTURES").is_some() {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("bulletin-sample.ndjson"), &text).unwrap();
            std::fs::write(dir.join("bulletin-sample.json"), serde_json::to_string_pretty(&meta).unwrap() + "\n").unwrap();
        }
        assert_eq!(std::fs::read_to_string(dir.join("bulletin-sample.ndjson")).unwrap(), text);
        let stored: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("bulletin-sample.json")).unwrap()).unwrap();
        assert_eq!(stored, meta);
    }
}
