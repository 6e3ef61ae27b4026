//! Ceph's text CRUSH map format: [`parse`] reads a map the way
//! `crushtool -c` compiles it and [`print`] writes it the way
//! `crushtool -d` decompiles it.
//!
//! Invariants:
//! - `print(&parse(t)?) == t` for every text `crushtool -d` printed (the
//!   decompiled form is a fixed point), byte for byte;
//! - nothing in here panics on any input: every problem is a [`ParseError`]
//!   with a 1-based line and column, what was expected and what was found;
//! - sizes and ids are bounded by [`crate::limits`] before anything is
//!   allocated for them.
//!
//! Grammar (Ceph's, whitespace free-form, `#` starts a comment):
//! `tunable`/`device`/`type` lines first, then buckets and rules (every
//! bucket before the first rule), then optional `choose_args` sections
//! (rejected for now: the model has no place for them yet).
//!
//! Compiler semantics reproduced from Ceph: weights are
//! `(u32)(strtof(text) * 65536.0f)`; an item without `weight` weighs 1.0
//! (device) or the bucket's own weight (bucket); `pos` places an item, the
//! others fill the free slots in order; a bucket without `id` gets the
//! highest negative id that no bucket uses or declares as its first line;
//! the class shadow trees are built once, when the first rule is reached
//! (a map without rules gets none, exactly like `crushtool -c`).
//!
//! Deliberate differences (stricter than crushtool, never more lenient):
//! duplicate device/type ids or names, an item listed twice in one bucket,
//! `hash` other than 0/rjenkins1, hierarchies deeper than
//! `limits::hierarchy_depth_max`, and buckets used before they are defined
//! are errors.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;

use crate::limits;
use crate::model::{
    Bucket, BucketAlg, CrushMap, ModelError, Rule, Step, Tunables, RULE_TYPE_ERASURE, RULE_TYPE_REPLICATED,
    WEIGHT_ONE,
};

/// Ceph's `CRUSH_MAX_DEVICE_WEIGHT`: 100.0 in 16.16.
const device_weight_max: u32 = 100 * WEIGHT_ONE;
/// Ceph's `CRUSH_MAX_BUCKET_WEIGHT`: 65535.0 in 16.16.
const bucket_weight_max: u32 = 65535 * WEIGHT_ONE;
/// Ceph stores a bucket's type in 16 bits.
const type_id_max: i64 = u16::MAX as i64;
/// Ceph stores `chooseleaf_vary_r`, `chooseleaf_stable` and
/// `straw_calc_version` in a byte; larger values cannot mean anything.
const byte_tunable_max: i64 = u8::MAX as i64;
/// Longest token text quoted back in an error message.
const found_chars_max: usize = 40;

/// A malformed map: where, what was expected there, and what was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: expected {expected}, found {found}")]
pub struct ParseError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// What the grammar or the compiler needed at this point.
    pub expected: String,
    /// What the text has there (quoted), possibly with the reason it is wrong.
    pub found: String,
}

/// A word of the text and the byte offset where it starts.
#[derive(Debug, Clone, Copy)]
struct W<'a> {
    s: &'a str,
    at: usize,
}

/// An error before its line and column are known.
struct Fail {
    at: usize,
    expected: String,
    /// `None`: quote whatever word is at `at`.
    found: Option<String>,
}

impl W<'_> {
    /// The word is well formed but wrong here, for `why`.
    fn invalid(&self, expected: impl Into<String>, why: impl std::fmt::Display) -> Fail {
        Fail { at: self.at, expected: expected.into(), found: Some(format!("{} ({why})", quote(self.s))) }
    }
}

fn quote(s: &str) -> String {
    let mut chars = s.chars();
    let head: String = chars.by_ref().take(found_chars_max).collect();
    if chars.next().is_some() {
        format!("'{head}...'")
    } else {
        format!("'{head}'")
    }
}

/// C's `isspace`.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'\x0b' | b'\x0c')
}

/// Ceph's `is_valid_crush_name`: letters, digits, `-`, `_`, `.`.
fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')
}

fn is_valid_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_name_byte)
}

fn digits_len(b: &[u8]) -> usize {
    b.iter().take_while(|c| c.is_ascii_digit()).count()
}

/// Length of the longest prefix matching Spirit's `real_p`:
/// `[+-]?(D+(.D*)?|.D+)([eE][+-]?D+)?`; 0 when none.
fn real_len(b: &[u8]) -> usize {
    let mut i = usize::from(matches!(b.first(), Some(b'+' | b'-')));
    let int = digits_len(&b[i..]);
    i += int;
    let mut frac = 0;
    if b.get(i) == Some(&b'.') {
        frac = digits_len(&b[i + 1..]);
        if int + frac > 0 {
            i += 1 + frac;
        }
    }
    if int + frac == 0 {
        return 0;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        let mut j = i + 1;
        if matches!(b.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        let exp = digits_len(&b[j..]);
        if exp > 0 {
            i = j + exp;
        }
    }
    i
}

/// A weight as Ceph's compiler computes it: `strtof(text) * 65536.0f`,
/// truncated to unsigned. Rust's `f32` parsing is correctly rounded like
/// glibc's `strtof`, and the product is taken in `f32` as in C.
pub fn weight_from_text(text: &str) -> Option<u32> {
    if text.is_empty() || real_len(text.as_bytes()) != text.len() {
        return None;
    }
    let w = text.parse::<f32>().ok()? * 65536.0f32;
    // Values in (-1, 0) truncate to 0 like the C conversion; anything more
    // negative or beyond u32 has no defined C result, so it is refused.
    if !(w > -1.0 && w < 4_294_967_296.0) {
        return None;
    }
    Some(w as u32)
}

/// A 16.16 value the way the decompiler prints it:
/// `snprintf("%.3f", (float)(int)w / (float)0x10000)`. Rust's fixed
/// precision formatting rounds the exact binary value half to even, like
/// glibc.
pub fn fixed_point_text(w: u32) -> String {
    format!("{:.3}", (w as i32) as f32 / 65536.0f32)
}

// ------------------------------------------------------------------ syntax

enum Node<'a> {
    Tunable { name: W<'a>, value: W<'a> },
    Device { id: W<'a>, name: W<'a>, class: Option<W<'a>> },
    Type { id: W<'a>, name: W<'a> },
    Bucket(BucketText<'a>),
    Rule(RuleText<'a>),
    ChooseArgs(W<'a>),
}

struct BucketText<'a> {
    type_name: W<'a>,
    name: W<'a>,
    /// `id N` and `id N class C` lines.
    ids: Vec<(W<'a>, Option<W<'a>>)>,
    alg: W<'a>,
    hashes: Vec<W<'a>>,
    items: Vec<ItemText<'a>>,
}

struct ItemText<'a> {
    name: W<'a>,
    weight: Option<W<'a>>,
    pos: Option<W<'a>>,
}

struct RuleText<'a> {
    keyword: W<'a>,
    name: Option<W<'a>>,
    id: W<'a>,
    rule_type: W<'a>,
    min_size: W<'a>,
    max_size: W<'a>,
    steps: Vec<StepText<'a>>,
}

#[derive(Clone, Copy)]
enum SetOp {
    ChooseTries,
    ChooseLocalTries,
    ChooseLocalFallbackTries,
    ChooseLeafTries,
    ChooseLeafVaryR,
    ChooseLeafStable,
}

const SET_STEPS: [(&str, SetOp); 6] = [
    ("set_choose_tries", SetOp::ChooseTries),
    ("set_choose_local_tries", SetOp::ChooseLocalTries),
    ("set_choose_local_fallback_tries", SetOp::ChooseLocalFallbackTries),
    ("set_chooseleaf_tries", SetOp::ChooseLeafTries),
    ("set_chooseleaf_vary_r", SetOp::ChooseLeafVaryR),
    ("set_chooseleaf_stable", SetOp::ChooseLeafStable),
];

enum StepText<'a> {
    Take { item: W<'a>, class: Option<W<'a>> },
    Choose { leaf: bool, indep: bool, n: W<'a>, type_name: W<'a> },
    Emit,
    Set { op: SetOp, value: W<'a> },
}

/// Ceph's grammar as a backtracking parser over the raw text, with
/// Spirit's behaviour: whitespace and `#` comments are skipped before every
/// token, keywords match as prefixes and tokens need no separator
/// (`device4 osd.4` is `device 4 osd.4`). On failure it reports the
/// furthest position any alternative reached and what would have fitted.
struct Grammar<'a> {
    src: &'a str,
    pos: usize,
    fail_at: usize,
    expected: Vec<String>,
}

impl<'a> Grammar<'a> {
    fn skip(&mut self) {
        let b = self.src.as_bytes();
        while self.pos < b.len() {
            if is_space(b[self.pos]) {
                self.pos += 1;
            } else if b[self.pos] == b'#' {
                self.pos += b[self.pos..].iter().position(|&c| c == b'\n').unwrap_or(b.len() - self.pos);
            } else {
                break;
            }
        }
    }

    fn fail(&mut self, at: usize, what: &str) {
        if at > self.fail_at {
            self.fail_at = at;
            self.expected.clear();
        }
        if at == self.fail_at && !self.expected.iter().any(|e| e == what) {
            self.expected.push(what.to_string());
        }
    }

    fn take(&mut self, at: usize, len: usize) -> W<'a> {
        self.pos = at + len;
        W { s: &self.src[at..at + len], at }
    }

    fn lit(&mut self, kw: &'static str) -> Option<W<'a>> {
        self.skip();
        let at = self.pos;
        if self.src.as_bytes()[at..].starts_with(kw.as_bytes()) {
            Some(self.take(at, kw.len()))
        } else {
            self.fail(at, &format!("'{kw}'"));
            None
        }
    }

    /// A lexeme whose length `scan` measures (0: no match).
    fn lexeme(&mut self, what: &str, scan: fn(&[u8]) -> usize) -> Option<W<'a>> {
        self.skip();
        let at = self.pos;
        match scan(&self.src.as_bytes()[at..]) {
            0 => {
                self.fail(at, what);
                None
            }
            n => Some(self.take(at, n)),
        }
    }

    fn name(&mut self, what: &str) -> Option<W<'a>> {
        self.lexeme(what, |b| b.iter().take_while(|&&c| is_name_byte(c)).count())
    }

    fn posint(&mut self, what: &str) -> Option<W<'a>> {
        self.lexeme(what, digits_len)
    }

    fn integer(&mut self, what: &str) -> Option<W<'a>> {
        self.lexeme(what, |b| {
            let sign = usize::from(b.first() == Some(&b'-'));
            match digits_len(&b[sign..]) {
                0 => 0,
                n => sign + n,
            }
        })
    }

    fn negint(&mut self, what: &str) -> Option<W<'a>> {
        self.lexeme(what, |b| match (b.first(), digits_len(b.get(1..).unwrap_or(&[]))) {
            (Some(b'-'), n) if n > 0 => n + 1,
            _ => 0,
        })
    }

    fn real(&mut self, what: &str) -> Option<W<'a>> {
        self.lexeme(what, real_len)
    }

    /// Runs `f`; on failure rewinds to where it started.
    fn opt<T>(&mut self, f: impl FnOnce(&mut Self) -> Option<T>) -> Option<T> {
        let save = self.pos;
        let r = f(self);
        if r.is_none() {
            self.pos = save;
        }
        r
    }

    /// `*f`: as many as match.
    fn star<T>(&mut self, mut f: impl FnMut(&mut Self) -> Option<T>) -> Vec<T> {
        let mut out = Vec::new();
        while let Some(x) = self.opt(&mut f) {
            out.push(x);
        }
        out
    }

    fn crushmap(&mut self) -> Vec<Node<'a>> {
        let mut nodes = self.star(|g| {
            g.opt(Self::tunable).or_else(|| g.opt(Self::device)).or_else(|| g.opt(Self::bucket_type))
        });
        nodes.extend(self.star(|g| g.opt(Self::bucket).or_else(|| g.opt(Self::rule))));
        nodes.extend(self.star(Self::choose_args));
        nodes
    }

    fn tunable(&mut self) -> Option<Node<'a>> {
        self.lit("tunable")?;
        let name = self.name("a tunable name")?;
        let value = self.posint("a tunable value")?;
        Some(Node::Tunable { name, value })
    }

    fn device(&mut self) -> Option<Node<'a>> {
        self.lit("device")?;
        let id = self.posint("a device id")?;
        let name = self.name("a device name")?;
        let class = self.opt(|g| {
            g.lit("class")?;
            g.name("a class name")
        });
        Some(Node::Device { id, name, class })
    }

    fn bucket_type(&mut self) -> Option<Node<'a>> {
        self.lit("type")?;
        let id = self.posint("a type id")?;
        let name = self.name("a type name")?;
        Some(Node::Type { id, name })
    }

    fn bucket(&mut self) -> Option<Node<'a>> {
        let type_name = self.name("a bucket type")?;
        let name = self.name("a bucket name")?;
        self.lit("{")?;
        let ids = self.star(|g| {
            g.lit("id")?;
            let id = g.negint("a negative bucket id")?;
            let class = g.opt(|g| {
                g.lit("class")?;
                g.name("a class name")
            });
            Some((id, class))
        });
        self.lit("alg")?;
        let alg = self.name("a bucket algorithm")?;
        let hashes = self.star(|g| {
            g.lit("hash")?;
            g.opt(|g| g.integer("a hash id")).or_else(|| g.opt(|g| g.lit("rjenkins1")))
        });
        let items = self.star(|g| {
            g.lit("item")?;
            let name = g.name("an item name")?;
            let weight = g.opt(|g| {
                g.lit("weight")?;
                g.real("a weight")
            });
            let pos = g.opt(|g| {
                g.lit("pos")?;
                g.posint("a position")
            });
            Some(ItemText { name, weight, pos })
        });
        self.lit("}")?;
        Some(Node::Bucket(BucketText { type_name, name, ids, alg, hashes, items }))
    }

    fn rule(&mut self) -> Option<Node<'a>> {
        let keyword = self.lit("rule")?;
        let name = self.opt(|g| g.name("a rule name"));
        self.lit("{")?;
        self.opt(|g| g.lit("id")).or_else(|| self.opt(|g| g.lit("ruleset")))?;
        let id = self.posint("a rule id")?;
        self.lit("type")?;
        let rule_type = self
            .opt(|g| g.lit("replicated"))
            .or_else(|| self.opt(|g| g.lit("erasure")))
            .or_else(|| self.opt(|g| g.posint("a rule type number")))?;
        self.lit("min_size")?;
        let min_size = self.posint("a minimum size")?;
        self.lit("max_size")?;
        let max_size = self.posint("a maximum size")?;
        let mut steps = vec![self.step()?];
        steps.extend(self.star(Self::step));
        self.lit("}")?;
        Some(Node::Rule(RuleText { keyword, name, id, rule_type, min_size, max_size, steps }))
    }

    fn step(&mut self) -> Option<StepText<'a>> {
        self.lit("step")?;
        if let Some(s) = self.opt(|g| {
            g.lit("take")?;
            let item = g.name("an item name")?;
            let class = g.opt(|g| {
                g.lit("class")?;
                g.name("a class name")
            });
            Some(StepText::Take { item, class })
        }) {
            return Some(s);
        }
        for (kw, op) in SET_STEPS {
            if let Some(value) = self.opt(|g| {
                g.lit(kw)?;
                g.posint("a non-negative integer")
            }) {
                return Some(StepText::Set { op, value });
            }
        }
        for (kw, leaf) in [("choose", false), ("chooseleaf", true)] {
            if let Some(s) = self.opt(|g| {
                g.lit(kw)?;
                let indep = g.opt(|g| g.lit("indep")).map(|_| true).or_else(|| g.opt(|g| g.lit("firstn")).map(|_| false))?;
                let n = g.integer("a number of items")?;
                g.lit("type")?;
                let type_name = g.name("a type name")?;
                Some(StepText::Choose { leaf, indep, n, type_name })
            }) {
                return Some(s);
            }
        }
        self.lit("emit")?;
        Some(StepText::Emit)
    }

    fn choose_args(&mut self) -> Option<Node<'a>> {
        let keyword = self.lit("choose_args")?;
        self.posint("a choose_args id")?;
        self.lit("{")?;
        self.star(|g| {
            g.lit("{")?;
            g.lit("bucket_id")?;
            g.negint("a negative bucket id")?;
            g.opt(|g| {
                g.lit("weight_set")?;
                g.lit("[")?;
                g.star(|g| {
                    g.lit("[")?;
                    g.star(|g| g.real("a weight"));
                    g.lit("]")
                });
                g.lit("]")
            });
            g.opt(|g| {
                g.lit("ids")?;
                g.lit("[")?;
                g.star(|g| g.integer("an id"));
                g.lit("]")
            });
            g.lit("}")
        });
        self.lit("}")?;
        Some(Node::ChooseArgs(keyword))
    }
}

/// Reads the whole text with Ceph's grammar (syntax only).
fn read_nodes(src: &str) -> Result<Vec<Node<'_>>, Fail> {
    let mut g = Grammar { src, pos: 0, fail_at: 0, expected: Vec::new() };
    let nodes = g.crushmap();
    g.skip();
    if g.pos < src.len() {
        g.fail(g.pos, "end of input");
        let expected = match g.expected.as_slice() {
            [] => "end of input".to_string(),
            [one] => one.clone(),
            [init @ .., last] => format!("{} or {last}", init.join(", ")),
        };
        return Err(Fail { at: g.fail_at, expected, found: None });
    }
    Ok(nodes)
}

// --------------------------------------------------------------- semantics

/// The compiler's state (Ceph's `CrushCompiler` maps).
struct Compiler<'a> {
    map: CrushMap,
    /// Device and bucket names (Ceph's `item_id`).
    items: HashMap<&'a str, i32>,
    /// Type names (Ceph's `type_id`).
    types: HashMap<&'a str, i32>,
    rule_names: HashSet<&'a str>,
    /// Bucket ids taken or reserved (negative part of Ceph's `id_item`).
    bucket_ids: HashSet<i32>,
    /// Levels of buckets below and including each bucket.
    depth: HashMap<i32, usize>,
    /// `id -N class C` lines: bucket → class → requested shadow id.
    requested: BTreeMap<i32, BTreeMap<i32, i32>>,
    saw_rule: bool,
}

/// Parses a text CRUSH map exactly as `crushtool -c` compiles it.
pub fn parse(text: &str) -> Result<CrushMap, ParseError> {
    if text.len() > limits::map_text_bytes_max {
        return Err(ParseError {
            line: 1,
            column: 1,
            expected: format!("a map of at most {} bytes", limits::map_text_bytes_max),
            found: format!("{} bytes", text.len()),
        });
    }
    compile(text).map_err(|f| locate(text, f))
}

fn compile(text: &str) -> Result<CrushMap, Fail> {
    let nodes = read_nodes(text)?;
    let order = bucket_order(&nodes)?;
    let mut c = Compiler {
        map: CrushMap::new(),
        items: HashMap::new(),
        types: HashMap::new(),
        rule_names: HashSet::new(),
        bucket_ids: reserved_bucket_ids(&nodes),
        depth: HashMap::new(),
        requested: BTreeMap::new(),
        saw_rule: false,
    };
    // Bucket definitions are taken in the adjusted order, at the places
    // where buckets stand in the text.
    let mut next_bucket = order.into_iter();
    for node in &nodes {
        match node {
            Node::Tunable { name, value } => c.tunable(*name, *value)?,
            Node::Device { id, name, class } => c.device(*id, *name, *class)?,
            Node::Type { id, name } => c.bucket_type(*id, *name)?,
            Node::Bucket(here) => {
                let b = match next_bucket.next().map(|i| &nodes[i]) {
                    Some(Node::Bucket(b)) => b,
                    _ => here,
                };
                if c.saw_rule {
                    return Err(Fail {
                        at: here.type_name.at,
                        expected: "'rule', 'choose_args' or end of input".to_string(),
                        found: Some(format!("{} (buckets must be defined before rules)", quote(here.type_name.s))),
                    });
                }
                c.bucket(b)?;
            }
            Node::Rule(r) => {
                if !c.saw_rule {
                    c.saw_rule = true;
                    c.build_classes();
                }
                c.rule(r)?;
            }
            Node::ChooseArgs(k) => {
                return Err(k.invalid("a map without choose_args", "choose_args is not supported yet"));
            }
        }
    }
    Ok(c.map)
}

/// Turns a byte offset into a 1-based line and column (in characters).
fn locate(text: &str, f: Fail) -> ParseError {
    let at = f.at.min(text.len());
    let before = &text.as_bytes()[..at];
    let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
    let line_start = before.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
    let column = 1 + String::from_utf8_lossy(&before[line_start..]).chars().count();
    let found = f.found.unwrap_or_else(|| {
        let rest = &text.as_bytes()[at..];
        match rest.first() {
            None => "end of input".to_string(),
            Some(b'{' | b'}' | b'[' | b']') => quote(&text[at..at + 1]),
            Some(_) => {
                let len = rest.iter().position(|&b| is_space(b) || b == b'#' || b"{}[]".contains(&b)).unwrap_or(rest.len());
                quote(&String::from_utf8_lossy(&rest[..len]))
            }
        }
    });
    ParseError { line, column, expected: f.expected, found }
}

/// Ids that buckets declare on their first line, which Ceph's compiler
/// reserves before giving ids to buckets without one
/// (`find_used_bucket_ids`).
fn reserved_bucket_ids(nodes: &[Node<'_>]) -> HashSet<i32> {
    nodes
        .iter()
        .filter_map(|n| match n {
            Node::Bucket(b) => b.ids.first().and_then(|(id, _)| id.s.parse::<i32>().ok()),
            _ => None,
        })
        .collect()
}

/// The order in which Ceph's compiler takes the buckets
/// (`adjust_bucket_item_place`): for each bucket i and each later bucket j
/// that i lists as an item, the two swap places. This lets some maps use a
/// bucket before defining it; a pair that contains each other is an error.
fn bucket_order(nodes: &[Node<'_>]) -> Result<Vec<usize>, Fail> {
    let buckets: Vec<(usize, &BucketText<'_>)> = nodes
        .iter()
        .enumerate()
        .filter_map(|(i, n)| match n {
            Node::Bucket(b) => Some((i, b)),
            _ => None,
        })
        .collect();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (k, (_, b)) in buckets.iter().enumerate() {
        index.entry(b.name.s).or_insert(k);
    }
    let contains = |k: usize, name: &str| buckets[k].1.items.iter().any(|it| it.name.s == name);
    let mut order: Vec<usize> = (0..buckets.len()).collect();
    for i in 0..buckets.len() {
        let mut later: Vec<usize> =
            buckets[i].1.items.iter().filter_map(|it| index.get(it.name.s).copied()).filter(|&j| j > i).collect();
        later.sort_unstable();
        later.dedup();
        for j in later {
            if contains(j, buckets[i].1.name.s) {
                return Err(buckets[i].1.name.invalid(
                    "buckets that do not contain each other",
                    format!("it and '{}' include each other", buckets[j].1.name.s),
                ));
            }
            order.swap(i, j);
        }
    }
    Ok(order.into_iter().map(|k| buckets[k].0).collect())
}

/// A `posint`/`integer` word's value within `min..=max`.
fn int_in(w: W<'_>, what: &str, min: i64, max: i64) -> Result<i64, Fail> {
    w.s.parse::<i64>()
        .ok()
        .filter(|v| (min..=max).contains(v))
        .ok_or_else(|| w.invalid(format!("{what} from {min} to {max}"), "out of range"))
}

impl<'a> Compiler<'a> {
    fn tunable(&mut self, name: W<'a>, value: W<'a>) -> Result<(), Fail> {
        let max = match name.s {
            "choose_local_tries" | "choose_local_fallback_tries" | "choose_total_tries" => {
                limits::choose_tries_max as i64
            }
            "chooseleaf_vary_r" | "chooseleaf_stable" | "straw_calc_version" => byte_tunable_max,
            "chooseleaf_descend_once" | "allowed_bucket_algs" => u32::MAX as i64,
            _ => {
                let known: Vec<&str> = Tunables::LEGACY.named().iter().map(|(n, _)| *n).collect();
                return Err(name.invalid(format!("a tunable ({})", known.join(", ")), "not recognized"));
            }
        };
        let v = int_in(value, "a value", 0, max)?;
        let known = self.map.tunables.set_named(name.s, v as u32);
        debug_assert!(known, "tunable names above match Tunables::set_named");
        Ok(())
    }

    /// Like Ceph: a repeated id renames the device (the old name still
    /// refers to it); a repeated name is an error.
    fn device(&mut self, id: W<'a>, name: W<'a>, class: Option<W<'a>>) -> Result<(), Fail> {
        let v = int_in(id, "a device id", 0, limits::devices_max as i64 - 1)? as i32;
        if self.items.contains_key(name.s) {
            return Err(name.invalid("a new device name", "defined twice"));
        }
        self.map.set_item_name(v, name.s);
        if let Some(c) = class {
            let cid = self.map.class_id_or_create(c.s).map_err(|e| c.invalid("a device class", e))?;
            self.map.device_classes.insert(v, cid);
        }
        self.items.insert(name.s, v);
        Ok(())
    }

    /// Like Ceph: a later line for the same id or name overrides.
    fn bucket_type(&mut self, id: W<'a>, name: W<'a>) -> Result<(), Fail> {
        let v = int_in(id, "a type id", 0, type_id_max)? as i32;
        self.types.insert(name.s, v);
        self.map.type_names.insert(v, name.s.to_string());
        Ok(())
    }

    fn bucket(&mut self, b: &BucketText<'a>) -> Result<(), Fail> {
        let type_id = *self.types.get(b.type_name.s).ok_or_else(|| b.type_name.invalid("a bucket type", "not defined"))?;
        let name = b.name;
        if self.items.contains_key(name.s) {
            return Err(name.invalid("a new bucket name", "already defined"));
        }

        let id_what = "a bucket id";
        let id_min = 1 - limits::buckets_max as i64;
        let mut id = 0i32;
        let mut id_word = name;
        let mut shadows: Vec<(i32, i32, W<'a>)> = Vec::new();
        for &(w, class) in &b.ids {
            let v = int_in(w, id_what, id_min, 0)? as i32;
            match class {
                Some(c) => {
                    // Ceph creates the class even if no device has it: an
                    // empty shadow tree may still be used by a rule.
                    let cid = self.map.class_id_or_create(c.s).map_err(|e| c.invalid("a device class", e))?;
                    if shadows.iter().any(|&(k, _, _)| k == cid) {
                        return Err(c.invalid("one id per class", "duplicate device class for this bucket"));
                    }
                    shadows.push((cid, v, w));
                }
                None => {
                    id = v;
                    id_word = w;
                }
            }
        }
        let alg = BucketAlg::from_name(b.alg.s).ok_or_else(|| {
            b.alg.invalid("a bucket algorithm ('uniform', 'list', 'tree', 'straw' or 'straw2')", "unknown")
        })?;
        for h in &b.hashes {
            // Ceph has one hash function; any other number would map with a
            // hash that always returns 0.
            let zero = h.s == "rjenkins1" || h.s.trim_start_matches('-').bytes().all(|d| d == b'0');
            if !zero {
                return Err(h.invalid("hash 0 (rjenkins1)", "the only hash Ceph has"));
            }
        }

        // Explicit positions first, then the rest fill the free slots.
        let size = b.items.len();
        if size > limits::bucket_items_max {
            return Err(name.invalid(format!("at most {} items", limits::bucket_items_max), format!("{size} items")));
        }
        let mut used = vec![false; size];
        let mut positions = Vec::with_capacity(size);
        for it in &b.items {
            let pos = match it.pos {
                Some(p) => {
                    let pos = p
                        .s
                        .parse::<usize>()
                        .ok()
                        .filter(|&v| v < size)
                        .ok_or_else(|| p.invalid(format!("a position below the bucket size {size}"), "out of range"))?;
                    if used[pos] {
                        return Err(p.invalid("a free position", "already occupied"));
                    }
                    used[pos] = true;
                    Some(pos)
                }
                None => None,
            };
            positions.push(pos);
        }
        let mut slots: Vec<Option<(i32, u32)>> = vec![None; size];
        let mut members: HashSet<i32> = HashSet::with_capacity(size);
        let mut uniform_weight: Option<u32> = None;
        let mut total: u32 = 0;
        let mut cur = 0usize;
        let mut depth = 1usize;
        for (it, pos) in b.items.iter().zip(positions) {
            let item = *self
                .items
                .get(it.name.s)
                .ok_or_else(|| it.name.invalid("a device or bucket defined above", "not defined"))?;
            if !members.insert(item) {
                return Err(it.name.invalid("each item once per bucket", "listed twice"));
            }
            let weight = match it.weight {
                Some(t) => {
                    let w = weight_from_text(t.s).ok_or_else(|| t.invalid("a weight from 0 to 65535", "out of range"))?;
                    if item >= 0 && w > device_weight_max {
                        return Err(t.invalid("a device weight of at most 100", "too large"));
                    }
                    if item < 0 && w > bucket_weight_max {
                        return Err(t.invalid("a bucket weight of at most 65535", "too large"));
                    }
                    w
                }
                None if item < 0 => self.map.bucket(item).map_or(WEIGHT_ONE, |bk| bk.weight),
                None => WEIGHT_ONE,
            };
            let at = it.weight.unwrap_or(it.name);
            if alg == BucketAlg::Uniform {
                match uniform_weight {
                    None => uniform_weight = Some(weight),
                    Some(u) if u != weight => {
                        return Err(at.invalid(
                            format!("the weight of the other items of uniform bucket '{}'", name.s),
                            format!("{} != {}", fixed_point_text(weight), fixed_point_text(u)),
                        ))
                    }
                    Some(_) => {}
                }
            }
            let pos = pos.unwrap_or_else(|| {
                while cur < size && used[cur] {
                    cur += 1;
                }
                cur += 1;
                cur - 1
            });
            total = total.checked_add(weight).ok_or_else(|| at.invalid("a bucket weight that fits 32 bits", "the sum overflows"))?;
            if item < 0 {
                depth = depth.max(1 + self.depth.get(&item).copied().unwrap_or(0));
            }
            if let Some(slot) = slots.get_mut(pos) {
                *slot = Some((item, weight));
            }
        }
        if depth > limits::hierarchy_depth_max {
            return Err(name.invalid(
                format!("a hierarchy at most {} buckets deep", limits::hierarchy_depth_max),
                format!("{depth} levels"),
            ));
        }

        if id == 0 {
            id = -1;
            while self.bucket_ids.contains(&id) {
                id -= 1;
            }
            if i64::from(id) < id_min {
                return Err(name.invalid(id_what, "no free bucket id left"));
            }
        }
        let (items, weights): (Vec<i32>, Vec<u32>) = slots.into_iter().flatten().unzip();
        let bucket = Bucket::new(id, type_id, alg, 0, items, weights, self.map.tunables.straw_calc_version)
            .map_err(|e| name.invalid("a valid bucket", e))?;
        self.map.add_bucket(name.s, bucket).map_err(|e| match e {
            ModelError::DuplicateId(_) | ModelError::BadBucketId(_) => id_word.invalid("an unused bucket id", e),
            _ => name.invalid("a valid bucket", e),
        })?;
        self.bucket_ids.insert(id);
        self.items.insert(name.s, id);
        self.depth.insert(id, depth);
        for (cid, shadow, _) in shadows {
            self.requested.entry(id).or_default().insert(cid, shadow);
        }
        Ok(())
    }

    /// Builds the class shadow trees, as Ceph's compiler does when it
    /// reaches the first rule. Like crushtool, a failure (a uniform bucket
    /// whose shadow would get a non-zero item, a requested shadow id already
    /// in use, ...) is not an error: the shadows built so far stay, the
    /// rest are missing, and a rule that takes a missing one fails there.
    fn build_classes(&mut self) {
        let _partial = self.map.populate_classes(&self.requested);
    }

    fn rule(&mut self, r: &RuleText<'a>) -> Result<(), Fail> {
        if let Some(n) = r.name {
            if !self.rule_names.insert(n.s) {
                return Err(n.invalid("a new rule name", "already defined"));
            }
        }
        let id = int_in(r.id, "a rule id", 0, limits::rules_max as i64 - 1)? as i32;
        if self.map.rule(id).is_some() {
            return Err(r.id.invalid("an unused rule id", "already defined"));
        }
        let rule_type = match r.rule_type.s {
            "replicated" => RULE_TYPE_REPLICATED,
            "erasure" => RULE_TYPE_ERASURE,
            _ => int_in(r.rule_type, "a rule type", 0, u8::MAX as i64)? as u8,
        };
        // Ceph keeps the sizes in a byte: 99999 becomes 159.
        let min_size = i32::from(int_in(r.min_size, "a size", 0, i32::MAX as i64)? as u8);
        let max_size = i32::from(int_in(r.max_size, "a size", 0, i32::MAX as i64)? as u8);
        if r.steps.len() > limits::rule_steps_max {
            return Err(r.keyword.invalid(
                format!("at most {} steps", limits::rule_steps_max),
                format!("{} steps", r.steps.len()),
            ));
        }
        let mut steps = Vec::with_capacity(r.steps.len());
        for s in &r.steps {
            steps.push(self.step(s)?);
        }
        let rule = Rule {
            id,
            name: r.name.map_or_else(String::new, |n| n.s.to_string()),
            rule_type,
            min_size,
            max_size,
            steps,
        };
        self.map.add_rule(rule).map_err(|e| r.id.invalid("a valid rule", e))
    }

    fn step(&mut self, s: &StepText<'a>) -> Result<Step, Fail> {
        Ok(match *s {
            StepText::Take { item, class } => {
                let mut id =
                    *self.items.get(item.s).ok_or_else(|| item.invalid("a device or bucket", "not defined"))?;
                if let Some(c) = class {
                    if self.map.class_id(c.s).is_none() {
                        return Err(c.invalid("a device class", "not defined"));
                    }
                    id = self
                        .map
                        .class_bucket(id, c.s)
                        .ok_or_else(|| c.invalid(format!("a class with a shadow of '{}'", item.s), "none"))?;
                }
                Step::Take(id)
            }
            StepText::Choose { leaf, indep, n, type_name } => {
                let type_id =
                    *self.types.get(type_name.s).ok_or_else(|| type_name.invalid("a type", "not defined"))?;
                let n = int_in(n, "a number of items", i32::MIN as i64, i32::MAX as i64)? as i32;
                match (leaf, indep) {
                    (false, false) => Step::ChooseFirstN { n, type_id },
                    (false, true) => Step::ChooseIndep { n, type_id },
                    (true, false) => Step::ChooseLeafFirstN { n, type_id },
                    (true, true) => Step::ChooseLeafIndep { n, type_id },
                }
            }
            StepText::Emit => Step::Emit,
            StepText::Set { op, value } => {
                let tries = limits::choose_tries_max as i64;
                match op {
                    SetOp::ChooseTries => Step::SetChooseTries(int_in(value, "tries", 0, tries)? as i32),
                    SetOp::ChooseLeafTries => Step::SetChooseLeafTries(int_in(value, "tries", 0, tries)? as i32),
                    SetOp::ChooseLocalTries => Step::SetChooseLocalTries(int_in(value, "tries", 0, tries)? as i32),
                    SetOp::ChooseLocalFallbackTries => {
                        Step::SetChooseLocalFallbackTries(int_in(value, "tries", 0, tries)? as i32)
                    }
                    SetOp::ChooseLeafVaryR => {
                        Step::SetChooseLeafVaryR(int_in(value, "a vary_r value", 0, byte_tunable_max)? as i32)
                    }
                    SetOp::ChooseLeafStable => {
                        Step::SetChooseLeafStable(int_in(value, "a stable value", 0, byte_tunable_max)? as i32)
                    }
                }
            }
        })
    }
}

// ---------------------------------------------------------------- printing

fn type_name(map: &CrushMap, t: i32) -> String {
    match map.type_names.get(&t) {
        Some(n) => n.clone(),
        None if t == 0 => "device".to_string(),
        None => format!("type{t}"),
    }
}

fn item_name(map: &CrushMap, id: i32) -> String {
    match map.item_name(id) {
        Some(n) => n.to_string(),
        None if id >= 0 => format!("device{id}"),
        None => format!("bucket{}", -1 - id as i64),
    }
}

/// Prints a map exactly as `crushtool -d` decompiles it.
pub fn print(map: &CrushMap) -> String {
    let mut out = String::new();
    out.push_str("# begin crush map\n");
    for ((name, value), (_, legacy)) in map.tunables.named().into_iter().zip(Tunables::LEGACY.named()) {
        if value != legacy {
            let _ = writeln!(out, "tunable {name} {value}");
        }
    }

    out.push_str("\n# devices\n");
    for (&id, name) in map.item_names.range(0..map.max_devices.max(0)) {
        let _ = write!(out, "device {id} {name}");
        if let Some(class) = map.device_classes.get(&id).and_then(|c| map.class_names.get(c)) {
            let _ = write!(out, " class {class}");
        }
        out.push('\n');
    }

    out.push_str("\n# types\n");
    // The decompiler prints type 0 as `osd` even when the map names no type 0.
    if !map.type_names.is_empty() && !map.type_names.contains_key(&0) {
        out.push_str("type 0 osd\n");
    }
    for (id, name) in map.type_names.range(0..) {
        let _ = writeln!(out, "type {id} {name}");
    }

    out.push_str("\n# buckets\n");
    print_buckets(map, &mut out);

    out.push_str("\n# rules\n");
    for rule in map.rules() {
        print_rule(map, rule, &mut out);
    }
    out.push_str("\n# end crush map\n");
    out
}

/// Buckets in the decompiler's order: for ids -1, -2, ... a depth-first
/// walk that prints children before their parent, each bucket once. Shadow
/// buckets (names with `~`) are walked but not printed.
fn print_buckets(map: &CrushMap, out: &mut String) {
    #[derive(PartialEq)]
    enum State {
        InProgress,
        Done,
    }
    let mut state: HashMap<i32, State> = HashMap::new();
    for slot in 0..map.max_buckets() {
        let root = -1 - slot as i32;
        if map.bucket(root).is_none() || state.contains_key(&root) {
            continue;
        }
        state.insert(root, State::InProgress);
        // Explicit stack: a hand-built map may be deeper than the call stack.
        let mut stack: Vec<(i32, usize)> = vec![(root, 0)];
        while let Some(top) = stack.last_mut() {
            let (id, next) = *top;
            let Some(b) = map.bucket(id) else {
                stack.pop();
                continue;
            };
            if let Some(&item) = b.items.get(next) {
                top.1 += 1;
                // A child already in progress is a cycle, which Ceph refuses
                // to print; skipping it keeps this total.
                if item < 0 && map.bucket(item).is_some() && !state.contains_key(&item) {
                    state.insert(item, State::InProgress);
                    stack.push((item, 0));
                }
            } else {
                stack.pop();
                print_bucket(map, b, out);
                state.insert(id, State::Done);
            }
        }
    }
    debug_assert!(state.values().all(|s| *s == State::Done));
}

fn print_bucket(map: &CrushMap, b: &Bucket, out: &mut String) {
    if map.item_name(b.id).is_some_and(|n| !is_valid_name(n)) {
        return;
    }
    let _ = writeln!(out, "{} {} {{", type_name(map, b.type_id), item_name(map, b.id));
    let _ = writeln!(out, "\tid {}\t\t# do not change unnecessarily", b.id);
    if let Some(classes) = map.class_buckets.get(&b.id) {
        for (class, shadow) in classes {
            let class = map.class_names.get(class).map_or("", String::as_str);
            let _ = writeln!(out, "\tid {shadow} class {class}\t\t# do not change unnecessarily");
        }
    }
    let _ = writeln!(out, "\t# weight {}", fixed_point_text(b.weight));
    let _ = write!(out, "\talg {}", b.alg.name());
    let with_pos = match b.alg {
        BucketAlg::Uniform => {
            let _ = write!(out, "\t# do not change bucket size ({}) unnecessarily", b.size());
            true
        }
        BucketAlg::List => {
            out.push_str("\t# add new items at the end; do not change order unnecessarily");
            false
        }
        BucketAlg::Tree => {
            out.push_str("\t# do not change pos for existing items unnecessarily");
            true
        }
        BucketAlg::Straw | BucketAlg::Straw2 => false,
    };
    out.push('\n');
    let hash_name = if b.hash == 0 { "rjenkins1" } else { "unknown" };
    let _ = writeln!(out, "\thash {}\t# {hash_name}", b.hash);
    for (pos, (&item, &w)) in b.items.iter().zip(&b.item_weights).enumerate() {
        let _ = write!(out, "\titem {} weight {}", item_name(map, item), fixed_point_text(w));
        if with_pos {
            let _ = write!(out, " pos {pos}");
        }
        out.push('\n');
    }
    out.push_str("}\n");
}

fn print_rule(map: &CrushMap, rule: &Rule, out: &mut String) {
    let _ = writeln!(out, "rule {} {{", rule.name);
    let _ = writeln!(out, "\tid {}", rule.id);
    match rule.rule_type {
        RULE_TYPE_REPLICATED => out.push_str("\ttype replicated\n"),
        RULE_TYPE_ERASURE => out.push_str("\ttype erasure\n"),
        t => {
            let _ = writeln!(out, "\ttype {t}");
        }
    }
    let _ = writeln!(out, "\tmin_size {}", rule.min_size);
    let _ = writeln!(out, "\tmax_size {}", rule.max_size);
    for step in &rule.steps {
        let _ = match *step {
            Step::Take(item) => match map.shadow_origin(item) {
                Some((orig, class)) => {
                    let class = map.class_names.get(&class).map_or("", String::as_str);
                    writeln!(out, "\tstep take {} class {class}", item_name(map, orig))
                }
                None => writeln!(out, "\tstep take {}", item_name(map, item)),
            },
            Step::ChooseFirstN { n, type_id } => {
                writeln!(out, "\tstep choose firstn {n} type {}", type_name(map, type_id))
            }
            Step::ChooseIndep { n, type_id } => {
                writeln!(out, "\tstep choose indep {n} type {}", type_name(map, type_id))
            }
            Step::ChooseLeafFirstN { n, type_id } => {
                writeln!(out, "\tstep chooseleaf firstn {n} type {}", type_name(map, type_id))
            }
            Step::ChooseLeafIndep { n, type_id } => {
                writeln!(out, "\tstep chooseleaf indep {n} type {}", type_name(map, type_id))
            }
            Step::Emit => writeln!(out, "\tstep emit"),
            Step::SetChooseTries(v) => writeln!(out, "\tstep set_choose_tries {v}"),
            Step::SetChooseLeafTries(v) => writeln!(out, "\tstep set_chooseleaf_tries {v}"),
            Step::SetChooseLocalTries(v) => writeln!(out, "\tstep set_choose_local_tries {v}"),
            Step::SetChooseLocalFallbackTries(v) => {
                writeln!(out, "\tstep set_choose_local_fallback_tries {v}")
            }
            Step::SetChooseLeafVaryR(v) => writeln!(out, "\tstep set_chooseleaf_vary_r {v}"),
            Step::SetChooseLeafStable(v) => writeln!(out, "\tstep set_chooseleaf_stable {v}"),
        };
    }
    out.push_str("}\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_truncate_an_f32_product() {
        assert_eq!(weight_from_text("1.819"), Some(119209));
        assert_eq!(weight_from_text("1"), Some(0x10000));
        assert_eq!(weight_from_text("0.5"), Some(0x8000));
        assert_eq!(weight_from_text("-0.000001"), Some(0));
        assert_eq!(weight_from_text("-1"), None);
        assert_eq!(weight_from_text("1e30"), None);
        assert_eq!(weight_from_text("inf"), None);
        assert_eq!(weight_from_text("nan"), None);
        assert_eq!(weight_from_text("1.2.3"), None);
        assert_eq!(weight_from_text("."), None);
        assert_eq!(weight_from_text("1e"), None);
        assert_eq!(weight_from_text(".5e1"), Some(5 * 0x10000));
    }

    #[test]
    fn fixed_point_rounds_half_to_even_like_glibc() {
        assert_eq!(fixed_point_text(0x1000), "0.062"); // 0.0625
        assert_eq!(fixed_point_text(0x3000), "0.188"); // 0.1875
        assert_eq!(fixed_point_text(119209), "1.819");
        assert_eq!(fixed_point_text(0), "0.000");
        assert_eq!(fixed_point_text(u32::MAX), "-0.000");
    }

    #[test]
    fn real_grammar_matches_spirit() {
        for (text, len) in [("1", 1), ("1.", 2), (".5", 2), ("+1.5", 4), ("-2", 2), ("1e5", 3), ("1.5E-3", 6), ("1e", 1), ("1.5pos", 3)] {
            assert_eq!(real_len(text.as_bytes()), len, "{text}");
        }
        for bad in ["", "+", "-.", ".", "e5", "inf", "nan"] {
            assert_eq!(real_len(bad.as_bytes()), 0, "{bad}");
        }
    }
}
