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
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(64);
    for b in h {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out
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

/// Lines per chunk of a stored bulletin: the store keeps each run of this
/// many consecutive lines' subtree root ([`chunked_proof`]), so a receipt's
/// proof reads one chunk and the chunks' roots, never the whole bulletin.
pub const CHUNK_LINES: usize = 256;

/// The inclusion proof of leaf `index_in_chunk` of chunk `chunk`, from that
/// chunk's leaf hashes and every chunk's root in order (every chunk but the
/// last holds exactly `chunk_len` leaves, a power of two). It is
/// [`inclusion_proof`] over all the leaves: RFC 9162 splits a range that
/// starts at a multiple of `chunk_len` and is longer than it at a multiple
/// of it, so the tree over the chunks' roots is the top of the tree over the
/// leaves, and [`root`] of the chunks' roots is the bulletin's root.
pub fn chunked_proof(chunk_leaves: &[Hash], index_in_chunk: usize, chunk_roots: &[Hash], chunk: usize) -> Vec<Hash> {
    let mut path = inclusion_proof(chunk_leaves, index_in_chunk);
    path.extend(inclusion_proof(chunk_roots, chunk));
    path
}

/// A vote's place in a certified bulletin: what a receipt carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inclusion {
    /// Its line's index (from 0) in the bulletin.
    pub index: u64,
    /// The bulletin's lines.
    pub size: u64,
    /// Its line as published.
    pub line: String,
    /// The audit path to the root (RFC 9162 §2.1.3), deepest first.
    pub path: Vec<Hash>,
}

/// One entry of a bulletin's index (`GET /api/contest/{id}/bulletin/index`,
/// one JSON object per line): lines `first_line ..= first_line + lines - 1`
/// (numbered from 1) and the root of their subtree. Every entry but the
/// last covers [`CHUNK_LINES`] lines; the root over the entries' roots is
/// the bulletin's root, so the index is certified by it. A verifier with the
/// index names the lines where a bulletin departs from what was certified.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexEntry {
    pub first_line: u64,
    pub lines: u64,
    pub root: String,
}

/// A bulletin's root and index, built one leaf at a time in O(log n) memory.
#[derive(Debug, Default, Clone)]
pub struct IndexBuilder {
    all: RootBuilder,
    chunk: RootBuilder,
}

impl IndexBuilder {
    /// Add the next line's leaf hash; the index entry it completes, if any.
    pub fn push(&mut self, leaf: Hash) -> Option<IndexEntry> {
        self.all.push(leaf);
        self.chunk.push(leaf);
        (self.chunk.size() as usize == CHUNK_LINES).then(|| self.take_chunk())
    }

    fn take_chunk(&mut self) -> IndexEntry {
        let chunk = std::mem::take(&mut self.chunk);
        IndexEntry { first_line: self.all.size() - chunk.size() + 1, lines: chunk.size(), root: hex(&chunk.root()) }
    }

    /// The last, shorter entry (if the lines did not end a run) and the root.
    pub fn finish(mut self) -> (Option<IndexEntry>, Hash) {
        let last = (self.chunk.size() > 0).then(|| self.take_chunk());
        (last, self.all.root())
    }
}

/// What a bulletin is checked against: the certificate's root, and what
/// else the verifier was given.
#[derive(Debug, Clone, Default)]
pub struct Expected {
    /// The root (hex) the certificate states.
    pub root: String,
    /// The certificate's line count and tallies (`bulletin_lines`, `by_band`, `by_status`).
    pub tally: Option<Summary>,
    /// The bulletin's index ([`IndexEntry`]).
    pub index: Option<Vec<IndexEntry>>,
}

impl Expected {
    /// Read a certificate: the [`crate::Certificate`] object, or a document
    /// holding one under `certificate` (the web app's `GET /api/contest` for the current contest).
    pub fn from_certificate_json(text: &str) -> Result<Self, BulletinError> {
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| BulletinError::Io(format!("certificate: {e}")))?;
        let c = v.get("certificate").filter(|c| c.is_object()).unwrap_or(&v);
        let c: crate::Certificate = serde_json::from_value(c.clone()).map_err(|e| BulletinError::Io(format!("certificate: {e}")))?;
        let tally = Summary { lines: c.bulletin_lines.max(0) as u64, root: c.bulletin_root.clone(), by_band: c.by_band, by_status: c.by_status };
        Ok(Self { root: c.bulletin_root, tally: Some(tally), index: None })
    }

    /// Read an index: one [`IndexEntry`] per line.
    pub fn with_index_ndjson(mut self, text: &str) -> Result<Self, BulletinError> {
        let entries = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.is_empty())
            .map(|(i, l)| serde_json::from_str(l).map_err(|e| BulletinError::Io(format!("index line {}: {e}", i + 1))))
            .collect::<Result<Vec<IndexEntry>, _>>()?;
        self.index = Some(entries);
        Ok(self)
    }
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

impl Summary {
    /// Count one more line (in order): its status, and its band when counted.
    pub fn add(&mut self, line: &Line) {
        *self.by_status.entry(line.status.clone()).or_default() += 1;
        if line.status == "counted" {
            *self.by_band.entry(line.band.clone()).or_default() += 1;
        }
        self.lines += 1;
    }
}

/// Why a bulletin does not check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BulletinError {
    #[error("line {line}: {problem}")]
    Line { line: u64, problem: String },
    #[error("root: the bulletin's is {computed}, the certificate says {expected}")]
    Root { computed: String, expected: String },
    #[error("lines {first}-{last}: their root is {computed}, the certified index says {expected}: a line among them was changed, added or removed")]
    Chunk { first: u64, last: u64, computed: String, expected: String },
    #[error("the index is not the certified one: {0}")]
    Index(String),
    #[error("the bulletin's tally differs from the certificate's: {}", .0.join("; "))]
    Tally(Vec<String>),
    #[error("{0}")]
    Io(String),
}

/// Recount a bulletin read line by line (bounded memory): each line parses,
/// is in its canonical form and in strictly increasing `leaf` order; the
/// root and the tallies are computed as it goes.
pub fn recount(lines: impl IntoIterator<Item = std::io::Result<String>>) -> Result<Summary, BulletinError> {
    recount_with_index(lines, None)
}

/// [`recount`], and with a certified `index` ([`check_index`] first), each
/// run of lines' root against it: the first run that differs is named.
pub fn recount_with_index(lines: impl IntoIterator<Item = std::io::Result<String>>, index: Option<&[IndexEntry]>) -> Result<Summary, BulletinError> {
    let mut builder = IndexBuilder::default();
    let mut s = Summary::default();
    let mut last: Option<String> = None;
    let mut entries = 0;
    // Each run of lines as it completes, against the certified index.
    let mut check = |mine: Option<IndexEntry>| -> Result<(), BulletinError> {
        let (Some(index), Some(mine)) = (index, mine) else { return Ok(()) };
        entries += 1;
        match index.get(entries - 1) {
            Some(e) if *e == mine => Ok(()),
            Some(e) => Err(BulletinError::Chunk { first: e.first_line, last: e.first_line + e.lines.max(mine.lines) - 1, computed: mine.root, expected: e.root.clone() }),
            None => Err(BulletinError::Chunk { first: mine.first_line, last: mine.first_line + mine.lines - 1, computed: mine.root, expected: "nothing: the certified bulletin ends before".into() }),
        }
    };
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
        check(builder.push(leaf_hash(text.as_bytes())))?;
        s.add(&line);
        last = Some(line.leaf);
    }
    let (tail, root) = builder.finish();
    check(tail)?;
    if let Some(e) = index.and_then(|index| index.get(entries)) {
        return Err(BulletinError::Chunk { first: e.first_line, last: e.first_line + e.lines - 1, computed: format!("nothing: the bulletin ends at line {}", s.lines), expected: e.root.clone() });
    }
    s.root = hex(&root);
    Ok(s)
}

/// Is `index` the bulletin index certified by `root`: runs of
/// [`CHUNK_LINES`] lines (the last possibly shorter), numbered from line 1
/// without gaps, whose roots' root is `root`?
pub fn check_index(index: &[IndexEntry], root: &str) -> Result<(), BulletinError> {
    let mut next = 1;
    let mut roots = Vec::with_capacity(index.len());
    for (i, e) in index.iter().enumerate() {
        let full = e.lines == CHUNK_LINES as u64;
        if e.first_line != next || e.lines == 0 || (!full && i + 1 != index.len()) || e.lines > CHUNK_LINES as u64 {
            return Err(BulletinError::Index(format!("entry {}: lines {}+{} where lines {next}.. of at most {CHUNK_LINES} were due", i + 1, e.first_line, e.lines)));
        }
        roots.push(unhex(&e.root).ok_or_else(|| BulletinError::Index(format!("entry {}: root is not 64 hex digits", i + 1)))?);
        next += e.lines;
    }
    let computed = hex(&self::root(&roots));
    if computed != root.to_ascii_lowercase() {
        return Err(BulletinError::Index(format!("its entries' roots give {computed}, the certificate says {root}")));
    }
    Ok(())
}

/// The differences between a bulletin's tally and a certificate's, named.
fn tally_differences(got: &Summary, want: &Summary) -> Vec<String> {
    let mut out = Vec::new();
    if got.lines != want.lines {
        out.push(format!("{} lines, the certificate says {}", got.lines, want.lines));
    }
    for (what, a, b) in [("band", &got.by_band, &want.by_band), ("status", &got.by_status, &want.by_status)] {
        let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        for k in keys {
            let (x, y) = (a.get(k).copied().unwrap_or(0), b.get(k).copied().unwrap_or(0));
            if x != y {
                out.push(format!("{what} {k:?}: {x} in the bulletin, {y} in the certificate"));
            }
        }
    }
    out
}

/// Check the bulletin at `path` against what its certificate states
/// (`expected`: the root; the tallies and the index when given); with
/// `receipt` (contest id, vote id), also find that vote's line (`None`: not
/// in the bulletin). Reads the file line by line (twice with a receipt):
/// bounded memory whatever its size. The first difference is named: a line
/// that breaks the format, the run of lines whose root the index does not
/// certify, the root, each band and status whose count differs.
pub fn verify_file(path: &std::path::Path, expected: &Expected, receipt: Option<(&str, &str)>) -> Result<(Summary, Option<Line>), BulletinError> {
    use std::io::BufRead as _;
    let open = || std::fs::File::open(path).map(std::io::BufReader::new).map_err(|e| BulletinError::Io(format!("{}: {e}", path.display())));
    if let Some(index) = &expected.index {
        check_index(index, &expected.root)?;
    }
    let summary = recount_with_index(open()?.lines(), expected.index.as_deref())?;
    if summary.root != expected.root.to_ascii_lowercase() {
        return Err(BulletinError::Root { computed: summary.root, expected: expected.root.clone() });
    }
    if let Some(want) = &expected.tally {
        let diffs = tally_differences(&summary, want);
        if !diffs.is_empty() {
            return Err(BulletinError::Tally(diffs));
        }
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

    /// A proof from one chunk and the chunks' roots is the proof over all
    /// the leaves, and the chunks' roots give the bulletin's root, for every
    /// size around the chunk boundaries (chunks of 4 and 8 here, 256 stored).
    #[test]
    fn a_chunked_proof_is_the_proof_over_all_the_leaves() {
        for chunk_len in [1usize, 4, 8] {
            for n in 1..70 {
                let l = leaves(n);
                let chunks: Vec<&[Hash]> = l.chunks(chunk_len).collect();
                let roots: Vec<Hash> = chunks.iter().map(|c| root(c)).collect();
                assert_eq!(root(&roots), root(&l), "root, size {n}, chunks of {chunk_len}");
                for i in 0..n {
                    let (c, j) = (i / chunk_len, i % chunk_len);
                    assert_eq!(chunked_proof(chunks[c], j, &roots, c), inclusion_proof(&l, i), "leaf {i} of {n}, chunks of {chunk_len}");
                }
            }
        }
        assert!(CHUNK_LINES.is_power_of_two());
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

    /// A bulletin of 700 lines and its index: each kind of tampering is
    /// caught, and named (the run of lines, the band), by the same checks
    /// `contest verify` runs.
    #[test]
    fn tampering_is_named_by_the_index_and_the_certificate() {
        let mut lines: Vec<Line> = (0..700).map(|i| line("c", &format!("v{i}"), ["Maná", "Caifanes"][i % 2], ["counted", "over_limit"][usize::from(i % 7 == 0)])).collect();
        lines.sort_by(|a, b| a.leaf.cmp(&b.leaf));
        let texts: Vec<String> = lines.iter().map(Line::text).collect();
        let mut b = IndexBuilder::default();
        let mut index: Vec<IndexEntry> = texts.iter().filter_map(|t| b.push(leaf_hash(t.as_bytes()))).collect();
        let (tail, root) = b.finish();
        index.extend(tail);
        assert_eq!(index.iter().map(|e| (e.first_line, e.lines)).collect::<Vec<_>>(), [(1, 256), (257, 256), (513, 188)]);
        let root = hex(&root);
        check_index(&index, &root).unwrap();
        let run = |t: &[String]| recount_with_index(t.iter().cloned().map(Ok), Some(&index));
        let good = run(&texts).unwrap();
        assert_eq!(good.root, root);

        let mut swapped = texts.clone();
        swapped[299] = Line { band: "Molotov".into(), ..lines[299].clone() }.text();
        assert!(matches!(run(&swapped), Err(BulletinError::Chunk { first: 257, last: 512, .. })), "{:?}", run(&swapped));
        let mut dropped = texts.clone();
        dropped.remove(9);
        assert!(matches!(run(&dropped), Err(BulletinError::Chunk { first: 1, last: 256, .. })));
        let mut added = texts.clone();
        added.push(line("c", "zz", "Maná", "counted").text().replace(&line("c", "zz", "Maná", "counted").leaf, &"f".repeat(64)));
        assert!(matches!(run(&added), Err(BulletinError::Chunk { first: 513, last: 701, .. })), "{:?}", run(&added));
        let cut = &texts[..512];
        assert!(matches!(run(cut), Err(BulletinError::Chunk { first: 513, last: 700, .. })));
        let mut other = index.clone();
        other[1].root = other[0].root.clone();
        assert!(matches!(check_index(&other, &root), Err(BulletinError::Index(_))), "an index the root does not certify");
        assert!(matches!(check_index(&index, &hex(&empty_root())), Err(BulletinError::Index(_))), "a changed root");

        // Against a certificate: the tallies, by band and status.
        let mut tally = good.clone();
        *tally.by_band.get_mut("Maná").unwrap() += 1;
        let diffs = tally_differences(&good, &tally);
        assert_eq!(diffs.len(), 1);
        assert!(diffs[0].contains("band \"Maná\"") && diffs[0].contains("certificate"), "{diffs:?}");
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
        let mut b = IndexBuilder::default();
        let mut index: Vec<IndexEntry> = text.lines().filter_map(|t| b.push(leaf_hash(t.as_bytes()))).collect();
        index.extend(b.finish().0);
        let meta = serde_json::json!({ "contest": contest, "root": s.root, "by_band": s.by_band, "by_status": s.by_status, "receipts": votes, "index": index });
        // At run time (`cargo test` sets it): a binary built in another checkout keeps its compile-time path.
        let crate_dir = std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")), std::path::PathBuf::from);
        let dir = crate_dir.join("../../tests/fixtures");
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
