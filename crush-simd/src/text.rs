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

/// One token: a word or one of `{ } [ ]`; the empty text is end of input.
#[derive(Debug, Clone, Copy)]
struct Tok<'a> {
    text: &'a str,
    line: usize,
    col: usize,
}

impl Tok<'_> {
    fn is_eof(&self) -> bool {
        self.text.is_empty()
    }

    /// The token as an error message quotes it.
    fn quoted(&self) -> String {
        if self.is_eof() {
            return "end of input".to_string();
        }
        let mut chars = self.text.chars();
        let head: String = chars.by_ref().take(found_chars_max).collect();
        if chars.next().is_some() {
            format!("'{head}...'")
        } else {
            format!("'{head}'")
        }
    }

    /// A syntax error at this token.
    fn expected(&self, expected: impl Into<String>) -> ParseError {
        ParseError { line: self.line, column: self.col, expected: expected.into(), found: self.quoted() }
    }

    /// A semantic error at this token: the token is well formed but wrong
    /// here, for `why`.
    fn invalid(&self, expected: impl Into<String>, why: impl std::fmt::Display) -> ParseError {
        ParseError {
            line: self.line,
            column: self.col,
            expected: expected.into(),
            found: format!("{} ({why})", self.quoted()),
        }
    }
}

/// C's `isspace` minus the newline, which the lexer counts.
fn is_blank(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\x0b' | '\x0c')
}

fn is_punct(c: char) -> bool {
    matches!(c, '{' | '}' | '[' | ']')
}

/// Splits the text into words and braces, dropping `#` comments. Cheap to
/// clone, which is how the parser looks ahead.
#[derive(Clone)]
struct Lexer<'a> {
    src: &'a str,
    pos: usize,
    line: usize,
    col: usize,
}

impl<'a> Lexer<'a> {
    fn new(src: &'a str) -> Lexer<'a> {
        Lexer { src, pos: 0, line: 1, col: 1 }
    }

    fn next_tok(&mut self) -> Tok<'a> {
        loop {
            let rest = &self.src[self.pos..];
            let Some(c) = rest.chars().next() else {
                return Tok { text: "", line: self.line, col: self.col };
            };
            if c == '\n' {
                self.pos += 1;
                self.line += 1;
                self.col = 1;
            } else if c == '#' {
                // The newline itself is left for the branch above.
                let len = rest.find('\n').unwrap_or(rest.len());
                self.pos += len;
            } else if is_blank(c) {
                self.pos += c.len_utf8();
                self.col += 1;
            } else if is_punct(c) {
                let tok = Tok { text: &rest[..1], line: self.line, col: self.col };
                self.pos += 1;
                self.col += 1;
                return tok;
            } else {
                let (line, col, start) = (self.line, self.col, self.pos);
                for c in rest.chars() {
                    if c == '\n' || c == '#' || is_blank(c) || is_punct(c) {
                        break;
                    }
                    self.pos += c.len_utf8();
                    self.col += 1;
                }
                return Tok { text: &self.src[start..self.pos], line, col };
            }
        }
    }

    fn peek(&self) -> Tok<'a> {
        self.clone().next_tok()
    }
}

/// Ceph's `is_valid_crush_name`: letters, digits, `-`, `_`, `.`.
fn is_valid_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// The grammar's `real_p`: `[+-]?(D+(.D*)?|.D+)([eE][+-]?D+)?`.
fn is_real(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if matches!(b.first(), Some(b'+' | b'-')) {
        i += 1;
    }
    let int_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let mut digits = i - int_start;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let frac_start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        digits += i - frac_start;
    }
    if digits == 0 {
        return false;
    }
    if i < b.len() && matches!(b[i], b'e' | b'E') {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let exp_start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == exp_start {
            return false;
        }
    }
    i == b.len()
}

/// A weight as Ceph's compiler computes it: `strtof(text) * 65536.0f`,
/// truncated to unsigned. Rust's `f32` parsing is correctly rounded like
/// glibc's `strtof`, and the product is taken in `f32` as in C.
pub fn weight_from_text(text: &str) -> Option<u32> {
    if !is_real(text) {
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

/// Ids that buckets declare on their first line (`NAME NAME { id -N`),
/// which Ceph's compiler reserves before assigning ids to buckets without
/// one (`find_used_bucket_ids`).
fn prescan_bucket_ids(text: &str) -> HashSet<i32> {
    let mut reserved = HashSet::new();
    let mut lex = Lexer::new(text);
    let mut prev: [&str; 2] = ["", ""];
    loop {
        let t = lex.next_tok();
        if t.is_eof() {
            break;
        }
        if t.text == "{" && prev[0] != "rule" && prev[1] != "rule" {
            let mut ahead = lex.clone();
            if ahead.next_tok().text == "id" {
                let n = ahead.next_tok();
                if let Some(id) = n.text.strip_prefix('-').filter(|d| all_digits(d)).and_then(|d| d.parse::<i32>().ok()) {
                    reserved.insert(-id);
                }
            }
        }
        prev = [prev[1], t.text];
    }
    reserved
}

/// A bucket's text, read before any of it is checked (Ceph checks a whole
/// parsed bucket in one go).
struct BucketText<'a> {
    type_tok: Tok<'a>,
    name_tok: Tok<'a>,
    /// `id N` and `id N class C` lines.
    ids: Vec<(Tok<'a>, Option<Tok<'a>>)>,
    alg_tok: Tok<'a>,
    hash_toks: Vec<Tok<'a>>,
    items: Vec<ItemText<'a>>,
}

struct ItemText<'a> {
    name: Tok<'a>,
    weight: Option<Tok<'a>>,
    pos: Option<Tok<'a>>,
}

struct Parser<'a> {
    lex: Lexer<'a>,
    map: CrushMap,
    /// Device and bucket names (Ceph's `item_id`).
    items: HashMap<&'a str, i32>,
    types: HashMap<&'a str, i32>,
    rule_names: HashSet<&'a str>,
    /// Bucket ids taken or reserved (Ceph's `id_item`, negative part).
    bucket_ids: HashSet<i32>,
    /// Levels of buckets below each bucket (1 for a bucket of devices).
    depth: HashMap<i32, usize>,
    /// `id -N class C` lines: bucket → class → requested shadow id.
    requested: BTreeMap<i32, BTreeMap<i32, i32>>,
    /// Where each requested shadow id and each bucket was written.
    shadow_at: HashMap<i32, Tok<'a>>,
    bucket_at: HashMap<i32, Tok<'a>>,
    classes_built: bool,
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
    let mut p = Parser {
        lex: Lexer::new(text),
        map: CrushMap::new(),
        items: HashMap::new(),
        types: HashMap::new(),
        rule_names: HashSet::new(),
        bucket_ids: prescan_bucket_ids(text),
        depth: HashMap::new(),
        requested: BTreeMap::new(),
        shadow_at: HashMap::new(),
        bucket_at: HashMap::new(),
        classes_built: false,
    };
    p.parse_map()?;
    Ok(p.map)
}

impl<'a> Parser<'a> {
    fn next(&mut self) -> Tok<'a> {
        self.lex.next_tok()
    }

    fn peek(&self) -> Tok<'a> {
        self.lex.peek()
    }

    /// Consumes `word` or fails with `expected`.
    fn expect(&mut self, word: &str, expected: &str) -> Result<Tok<'a>, ParseError> {
        let t = self.next();
        if t.text == word {
            Ok(t)
        } else {
            Err(t.expected(expected))
        }
    }

    /// Consumes `word` if it is next.
    fn accept(&mut self, word: &str) -> Option<Tok<'a>> {
        if self.peek().text == word {
            Some(self.next())
        } else {
            None
        }
    }

    fn name(&mut self, what: &str) -> Result<Tok<'a>, ParseError> {
        let t = self.next();
        if is_valid_name(t.text) {
            Ok(t)
        } else {
            Err(t.expected(what))
        }
    }

    /// A token of the grammar's `posint` within `0..=max`.
    fn posint(&mut self, what: &str, max: i64) -> Result<(Tok<'a>, i64), ParseError> {
        let t = self.next();
        let v = posint_value(&t, what, max)?;
        Ok((t, v))
    }

    /// A token of the grammar's `integer` (optional minus) within i32.
    fn integer(&mut self, what: &str) -> Result<(Tok<'a>, i32), ParseError> {
        let t = self.next();
        let digits = t.text.strip_prefix('-').unwrap_or(t.text);
        if !all_digits(digits) {
            return Err(t.expected(what));
        }
        let v = t.text.parse::<i32>().map_err(|_| t.invalid(what, "out of range"))?;
        Ok((t, v))
    }

    fn parse_map(&mut self) -> Result<(), ParseError> {
        // Tunables, devices and types, in any order.
        loop {
            match self.peek().text {
                "tunable" => self.parse_tunable()?,
                "device" => self.parse_device()?,
                "type" => self.parse_type()?,
                _ => break,
            }
        }
        // Buckets and rules; Ceph's compiler refuses a bucket after a rule.
        let mut saw_rule = false;
        loop {
            let t = self.peek();
            match t.text {
                "" | "choose_args" => break,
                "rule" => {
                    if !self.classes_built {
                        self.build_classes(t)?;
                    }
                    saw_rule = true;
                    self.parse_rule()?;
                }
                "tunable" | "device" | "type" => {
                    return Err(t.expected("a bucket or a rule (tunables, devices and types come first)"));
                }
                _ if saw_rule => {
                    return Err(t.expected("'rule', 'choose_args' or end of input (buckets come before rules)"));
                }
                _ => self.parse_bucket()?,
            }
        }
        let t = self.peek();
        if t.text == "choose_args" {
            return Err(t.expected("a map without choose_args (choose_args is not supported yet)"));
        }
        Ok(())
    }

    fn parse_tunable(&mut self) -> Result<(), ParseError> {
        self.next();
        let name = self.name("a tunable name")?;
        let max = match name.text {
            "choose_local_tries" | "choose_local_fallback_tries" | "choose_total_tries" => {
                limits::choose_tries_max as i64
            }
            "chooseleaf_vary_r" | "chooseleaf_stable" | "straw_calc_version" => byte_tunable_max,
            "chooseleaf_descend_once" | "allowed_bucket_algs" => u32::MAX as i64,
            _ => {
                let known: Vec<&str> = Tunables::LEGACY.named().iter().map(|(n, _)| *n).collect();
                return Err(name.invalid(format!("a tunable name ({})", known.join(", ")), "not recognized"));
            }
        };
        let (_, value) = self.posint("a tunable value", max)?;
        let known = self.map.tunables.set_named(name.text, value as u32);
        debug_assert!(known, "tunable names above match Tunables::set_named");
        Ok(())
    }

    fn parse_device(&mut self) -> Result<(), ParseError> {
        self.next();
        let (id_tok, id) = self.posint("a device id", limits::devices_max as i64 - 1)?;
        let name = self.name("a device name")?;
        let class = match self.accept("class") {
            Some(_) => Some(self.name("a class name")?),
            None => None,
        };
        if self.items.contains_key(name.text) {
            return Err(name.invalid("a new device name", "already defined"));
        }
        let id = id as i32;
        self.map.add_device(id, name.text, class.map(|c| c.text)).map_err(|e| match e {
            ModelError::DuplicateName(_) => name.invalid("a new device name", e),
            ModelError::TooManyClasses => class.unwrap_or(name).invalid("at most a few device classes", e),
            _ => id_tok.invalid("an unused device id", e),
        })?;
        self.items.insert(name.text, id);
        Ok(())
    }

    fn parse_type(&mut self) -> Result<(), ParseError> {
        self.next();
        let (id_tok, id) = self.posint("a type id", type_id_max)?;
        let name = self.name("a type name")?;
        self.map.add_type(id as i32, name.text).map_err(|e| match e {
            ModelError::DuplicateName(_) => name.invalid("a new type name", e),
            _ => id_tok.invalid("an unused type id", e),
        })?;
        self.types.insert(name.text, id as i32);
        Ok(())
    }

    /// Reads a bucket's text (grammar only).
    fn read_bucket(&mut self) -> Result<BucketText<'a>, ParseError> {
        let type_tok = self.name("a bucket type, 'rule' or end of input")?;
        let name_tok = self.name("a bucket name")?;
        self.expect("{", "'{'")?;
        let mut ids = Vec::new();
        while self.accept("id").is_some() {
            let t = self.next();
            if !t.text.strip_prefix('-').is_some_and(all_digits) {
                return Err(t.expected("a negative bucket id"));
            }
            let class = match self.accept("class") {
                Some(_) => Some(self.name("a class name")?),
                None => None,
            };
            ids.push((t, class));
        }
        self.expect("alg", "'alg'")?;
        let alg_tok = self.name("a bucket algorithm")?;
        let mut hash_toks = Vec::new();
        while self.accept("hash").is_some() {
            hash_toks.push(self.next());
        }
        let mut items = Vec::new();
        loop {
            let t = self.next();
            match t.text {
                "}" => break,
                "item" => {}
                _ if items.is_empty() && hash_toks.is_empty() => return Err(t.expected("'hash', 'item' or '}'")),
                _ if items.is_empty() => return Err(t.expected("'hash', 'item' or '}'")),
                _ => return Err(t.expected("'weight', 'pos', 'item' or '}'")),
            }
            let name = self.name("an item name")?;
            let weight = match self.accept("weight") {
                Some(_) => Some(self.next()),
                None => None,
            };
            let pos = match self.accept("pos") {
                Some(_) => Some(self.next()),
                None => None,
            };
            if let Some(w) = weight {
                if !is_real(w.text) {
                    return Err(w.expected("a weight (a decimal number)"));
                }
            }
            if let Some(p) = pos {
                if !all_digits(p.text) {
                    return Err(p.expected("a position (a non-negative integer)"));
                }
            }
            items.push(ItemText { name, weight, pos });
        }
        Ok(BucketText { type_tok, name_tok, ids, alg_tok, hash_toks, items })
    }

    fn parse_bucket(&mut self) -> Result<(), ParseError> {
        let b = self.read_bucket()?;
        let type_id =
            *self.types.get(b.type_tok.text).ok_or_else(|| b.type_tok.invalid("a bucket type", "not defined"))?;
        let name = b.name_tok;
        if self.items.contains_key(name.text) {
            return Err(name.invalid("a new bucket name", "already defined"));
        }

        let id_range = format!("a bucket id from -1 to -{}", limits::buckets_max - 1);
        let mut id = 0i32;
        let mut id_tok = name;
        let mut shadows: Vec<(i32, i32, Tok<'a>)> = Vec::new();
        for (t, class) in &b.ids {
            let v = t
                .text
                .parse::<i32>()
                .ok()
                .filter(|&v| v > -(limits::buckets_max as i32))
                .ok_or_else(|| t.invalid(id_range.as_str(), "out of range"))?;
            match class {
                Some(c) => {
                    let cid = self.map.class_id_or_create(c.text).map_err(|e| c.invalid("a device class", e))?;
                    if shadows.iter().any(|&(k, _, _)| k == cid) {
                        return Err(c.invalid("one id per class", "duplicate device class for this bucket"));
                    }
                    shadows.push((cid, v, *t));
                }
                None => {
                    id = v;
                    id_tok = *t;
                }
            }
        }
        let alg = BucketAlg::from_name(b.alg_tok.text).ok_or_else(|| {
            b.alg_tok.expected("a bucket algorithm ('uniform', 'list', 'tree', 'straw' or 'straw2')")
        })?;
        for h in &b.hash_toks {
            // Ceph has one hash function; any other number would map with a
            // hash that always returns 0.
            let zero = h.text == "rjenkins1" || (all_digits(h.text) && h.text.bytes().all(|d| d == b'0'));
            if !zero {
                return Err(h.expected("hash '0' or 'rjenkins1'"));
            }
        }

        // Explicit positions first, then the rest fill the free slots.
        let size = b.items.len();
        if size > limits::bucket_items_max {
            return Err(name.invalid(
                format!("at most {} items in a bucket", limits::bucket_items_max),
                format!("{size} items"),
            ));
        }
        let mut used = vec![false; size];
        for it in &b.items {
            if let Some(p) = it.pos {
                let pos = p.text.parse::<usize>().ok().filter(|&v| v < size).ok_or_else(|| {
                    p.invalid(format!("a position below the bucket size {size}"), "out of range")
                })?;
                if used[pos] {
                    return Err(p.invalid("a free position", "already occupied"));
                }
                used[pos] = true;
            }
        }
        let mut slots: Vec<Option<(i32, u32)>> = vec![None; size];
        let mut members: HashSet<i32> = HashSet::with_capacity(size);
        let mut uniform_weight: Option<u32> = None;
        let mut total: u32 = 0;
        let mut cur = 0usize;
        let mut depth = 1usize;
        for it in &b.items {
            let item = *self
                .items
                .get(it.name.text)
                .ok_or_else(|| it.name.invalid("a device or bucket defined above", "not defined"))?;
            if !members.insert(item) {
                return Err(it.name.invalid("each item once per bucket", "listed twice"));
            }
            let weight = match it.weight {
                Some(t) => {
                    let w = weight_from_text(t.text)
                        .ok_or_else(|| t.invalid("a weight from 0 to 65535", "out of range"))?;
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
            if alg == BucketAlg::Uniform {
                match uniform_weight {
                    None => uniform_weight = Some(weight),
                    Some(u) if u != weight => {
                        return Err(it.weight.unwrap_or(it.name).invalid(
                            format!("the same weight as the other items of uniform bucket '{}'", name.text),
                            format!("{} != {}", fixed_point_text(weight), fixed_point_text(u)),
                        ))
                    }
                    Some(_) => {}
                }
            }
            let pos = match it.pos {
                Some(p) => p.text.parse::<usize>().unwrap_or(0),
                None => {
                    while cur < size && used[cur] {
                        cur += 1;
                    }
                    let p = cur;
                    cur += 1;
                    p
                }
            };
            total = total.checked_add(weight).ok_or_else(|| {
                it.weight.unwrap_or(it.name).invalid("bucket weights that fit in 32 bits", "the sum overflows")
            })?;
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
            if id <= -(limits::buckets_max as i32) {
                return Err(name.invalid(id_range.as_str(), "no free bucket id left"));
            }
        }
        let (items, weights): (Vec<i32>, Vec<u32>) = slots.into_iter().flatten().unzip();
        let bucket = Bucket::new(id, type_id, alg, 0, items, weights, self.map.tunables.straw_calc_version)
            .map_err(|e| name.invalid("a valid bucket", e))?;
        self.map.add_bucket(name.text, bucket).map_err(|e| match e {
            ModelError::DuplicateId(_) | ModelError::BadBucketId(_) => id_tok.invalid("an unused bucket id", e),
            _ => name.invalid("a valid bucket", e),
        })?;
        self.bucket_ids.insert(id);
        self.items.insert(name.text, id);
        self.depth.insert(id, depth);
        self.bucket_at.insert(id, name);
        for (cid, shadow, t) in shadows {
            self.requested.entry(id).or_default().insert(cid, shadow);
            self.shadow_at.entry(shadow).or_insert(t);
        }
        Ok(())
    }

    /// Builds the class shadow trees, as Ceph's compiler does when it
    /// reaches the first rule.
    fn build_classes(&mut self, at: Tok<'a>) -> Result<(), ParseError> {
        self.classes_built = true;
        self.map.populate_classes(&self.requested).map_err(|e| {
            let culprit = match &e {
                ModelError::DuplicateId(id) | ModelError::BadBucketId(id) => self.shadow_at.get(id),
                ModelError::NoSuchItem { bucket, .. } | ModelError::BadHierarchy { bucket, .. } => {
                    self.bucket_at.get(bucket)
                }
                _ => None,
            };
            culprit.copied().unwrap_or(at).invalid("class shadow buckets that can be built", e)
        })
    }

    fn parse_rule(&mut self) -> Result<(), ParseError> {
        let rule_tok = self.next();
        let name = if self.peek().text == "{" { None } else { Some(self.name("a rule name or '{'")?) };
        self.expect("{", "'{'")?;
        let t = self.next();
        if t.text != "id" && t.text != "ruleset" {
            return Err(t.expected("'id'"));
        }
        let (id_tok, id) = self.posint("a rule id", limits::rules_max as i64 - 1)?;
        self.expect("type", "'type'")?;
        let t = self.next();
        let rule_type = match t.text {
            "replicated" => RULE_TYPE_REPLICATED,
            "erasure" => RULE_TYPE_ERASURE,
            _ if all_digits(t.text) => {
                posint_value(&t, "a rule type ('replicated', 'erasure' or a number)", 255)? as u8
            }
            _ => return Err(t.expected("a rule type ('replicated', 'erasure' or a number)")),
        };
        self.expect("min_size", "'min_size'")?;
        let (_, min_size) = self.posint("a minimum size", i32::MAX as i64)?;
        self.expect("max_size", "'max_size'")?;
        let (_, max_size) = self.posint("a maximum size", i32::MAX as i64)?;

        if let Some(n) = name {
            if !self.rule_names.insert(n.text) {
                return Err(n.invalid("a new rule name", "already defined"));
            }
        }
        if self.map.rule(id as i32).is_some() {
            return Err(id_tok.invalid("an unused rule id", "already defined"));
        }
        let mut steps = Vec::new();
        loop {
            let t = self.next();
            match t.text {
                "step" => {}
                "}" if !steps.is_empty() => break,
                _ if steps.is_empty() => return Err(t.expected("'step'")),
                _ => return Err(t.expected("'step' or '}'")),
            }
            if steps.len() == limits::rule_steps_max {
                return Err(t.invalid(format!("at most {} steps in a rule", limits::rule_steps_max), "one more"));
            }
            steps.push(self.parse_step()?);
        }
        let rule = Rule {
            id: id as i32,
            name: name.map_or_else(String::new, |n| n.text.to_string()),
            rule_type,
            min_size: min_size as i32,
            max_size: max_size as i32,
            steps,
        };
        self.map.add_rule(rule).map_err(|e| name.unwrap_or(rule_tok).invalid("a valid rule", e))
    }

    fn parse_step(&mut self) -> Result<Step, ParseError> {
        let op = self.next();
        let tries = limits::choose_tries_max as i64;
        let step = match op.text {
            "take" => {
                let item = self.name("an item name")?;
                let mut id = *self
                    .items
                    .get(item.text)
                    .ok_or_else(|| item.invalid("a device or bucket defined above", "not defined"))?;
                if self.accept("class").is_some() {
                    let class = self.name("a class name")?;
                    if self.map.class_id(class.text).is_none() {
                        return Err(class.invalid("a device class", "not defined"));
                    }
                    id = self
                        .map
                        .class_bucket(id, class.text)
                        .ok_or_else(|| class.invalid(format!("a class of '{}'", item.text), "no shadow bucket"))?;
                }
                Step::Take(id)
            }
            "choose" | "chooseleaf" => {
                let mode = self.next();
                if mode.text != "firstn" && mode.text != "indep" {
                    return Err(mode.expected("'firstn' or 'indep'"));
                }
                let (_, n) = self.integer("a number of items")?;
                self.expect("type", "'type'")?;
                let t = self.name("a type name")?;
                let type_id = *self.types.get(t.text).ok_or_else(|| t.invalid("a type", "not defined"))?;
                match (op.text, mode.text) {
                    ("choose", "firstn") => Step::ChooseFirstN { n, type_id },
                    ("choose", _) => Step::ChooseIndep { n, type_id },
                    (_, "firstn") => Step::ChooseLeafFirstN { n, type_id },
                    _ => Step::ChooseLeafIndep { n, type_id },
                }
            }
            "emit" => Step::Emit,
            "set_choose_tries" => Step::SetChooseTries(self.posint("a number of tries", tries)?.1 as i32),
            "set_chooseleaf_tries" => Step::SetChooseLeafTries(self.posint("a number of tries", tries)?.1 as i32),
            "set_choose_local_tries" => {
                Step::SetChooseLocalTries(self.posint("a number of tries", tries)?.1 as i32)
            }
            "set_choose_local_fallback_tries" => {
                Step::SetChooseLocalFallbackTries(self.posint("a number of tries", tries)?.1 as i32)
            }
            "set_chooseleaf_vary_r" => {
                Step::SetChooseLeafVaryR(self.posint("a vary_r value", byte_tunable_max)?.1 as i32)
            }
            "set_chooseleaf_stable" => {
                Step::SetChooseLeafStable(self.posint("a stable value", byte_tunable_max)?.1 as i32)
            }
            _ => {
                return Err(op.expected(
                    "a step ('take', 'choose', 'chooseleaf', 'emit', 'set_choose_tries', \
                     'set_chooseleaf_tries', 'set_choose_local_tries', \
                     'set_choose_local_fallback_tries', 'set_chooseleaf_vary_r' or 'set_chooseleaf_stable')",
                ))
            }
        };
        Ok(step)
    }
}

/// A `posint` token's value within `0..=max`.
fn posint_value(t: &Tok<'_>, what: &str, max: i64) -> Result<i64, ParseError> {
    if !all_digits(t.text) {
        return Err(t.expected(what));
    }
    t.text
        .parse::<i64>()
        .ok()
        .filter(|&v| v <= max)
        .ok_or_else(|| t.invalid(format!("{what} from 0 to {max}"), "out of range"))
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
    fn lexer_tracks_lines_columns_and_comments() {
        let mut lex = Lexer::new("a #x {\n\tbb{c}\n");
        let toks: Vec<(String, usize, usize)> = std::iter::from_fn(|| {
            let t = lex.next_tok();
            (!t.is_eof()).then(|| (t.text.to_string(), t.line, t.col))
        })
        .collect();
        let want = [("a", 1, 1), ("bb", 2, 2), ("{", 2, 4), ("c", 2, 5), ("}", 2, 6)];
        let want: Vec<(String, usize, usize)> = want.iter().map(|&(s, l, c)| (s.to_string(), l, c)).collect();
        assert_eq!(toks, want);
    }

    #[test]
    fn real_grammar() {
        for ok in ["1", "1.", ".5", "+1.5", "-2", "1e5", "1.5E-3"] {
            assert!(is_real(ok), "{ok}");
        }
        for bad in ["", "+", "-.", "e5", "1e", "1e+", "0x10", "1.5.", "inf", "nan", "1_0"] {
            assert!(!is_real(bad), "{bad}");
        }
    }
}
