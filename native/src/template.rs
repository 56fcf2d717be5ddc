//! One pass over JSON records written in a fixed layout: literal text between typed fields.
//!
//! A template is `literals[0] kind[0] literals[1] kind[1] ... literals[n]`; a value matches when its bytes
//! are valid UTF-8 and follow the template exactly. The kinds mirror the regular expressions of the Python
//! decoders (records/validate.py, records/outputs.py), field for field:
//!
//! - `str`: `"([^"\\\x00-\x1f]*)"` (a string without escapes, captured), `str+` the same, non-empty;
//! - `int`: `(-?(?:0|[1-9][0-9]*))` captured as Int64 (null when beyond 64 bits);
//! - `num+`: `((?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)` captured as Float64;
//! - `num?`: `(null|-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)` captured as Float64 (null for
//!   `null`) plus a Boolean column `<name>_plain`: `null`, or a finite number other than the integer `-0`;
//! - `jint`: `-?(?:0|[1-9][0-9]*)` and `jstr`: `"(?:[^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*"`,
//!   checked, not captured.
//!
//! The scan is deterministic (no backtracking) because each literal after a field starts with a byte that
//! cannot continue that field (`,` or `}` in every layout), which the constructor checks.

use std::sync::Arc;

use arrow_array::builder::{BooleanBuilder, Float64Builder, Int64Builder, StringViewBuilder};
use arrow_array::{ArrayRef, StructArray};
use arrow_schema::{DataType, Field, Fields};

#[derive(Clone, Copy, PartialEq)]
pub enum Kind {
    Str,
    StrNonEmpty,
    Int,
    NumNonNeg,
    NumOrNull,
    JsonInt,
    JsonStr,
}

impl Kind {
    pub fn parse(name: &str) -> Option<Kind> {
        Some(match name {
            "str" => Kind::Str,
            "str+" => Kind::StrNonEmpty,
            "int" => Kind::Int,
            "num+" => Kind::NumNonNeg,
            "num?" => Kind::NumOrNull,
            "jint" => Kind::JsonInt,
            "jstr" => Kind::JsonStr,
            _ => return None,
        })
    }
}

pub struct Template {
    literals: Vec<Vec<u8>>,
    kinds: Vec<Kind>,
    names: Vec<String>,
}

/// What one field of a value held.
enum Got<'a> {
    Text(&'a str),
    Int(Option<i64>),
    Num(Option<f64>, bool),
    Checked,
}

struct Columns {
    matched: BooleanBuilder,
    builders: Vec<Builder>,
}

enum Builder {
    Str(StringViewBuilder),
    Int(Int64Builder),
    Num(Float64Builder),
    NumOrNull(Float64Builder, BooleanBuilder),
    None,
}

/// `lit` at `v[i..]`. A literal is a few bytes (a call to memcmp per literal cost more than the comparison): from 8
/// to 16 bytes, two overlapping 8-byte words are compared; shorter ones byte by byte.
#[inline]
fn has_at(v: &[u8], i: usize, lit: &[u8]) -> bool {
    let Some(window) = v.get(i..i + lit.len()) else {
        return false;
    };
    let n = lit.len();
    if (8..=16).contains(&n) {
        let word = |b: &[u8], at: usize| u64::from_ne_bytes(b[at..at + 8].try_into().unwrap());
        word(window, 0) == word(lit, 0) && word(window, n - 8) == word(lit, n - 8)
    } else {
        window.iter().zip(lit).all(|(a, b)| a == b)
    }
}

/// What a byte is inside a plain string: 0 ASCII text, 1 the end or not allowed (`"`, `\`, control), 2 part of a
/// multi-byte character (the string's UTF-8 is then checked).
const PLAIN: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = if b == b'"' as usize || b == b'\\' as usize || b < 0x20 {
            1
        } else if b >= 0x80 {
            2
        } else {
            0
        };
        b += 1;
    }
    table
};

fn digits_end(v: &[u8], mut i: usize) -> usize {
    while i < v.len() && v[i].is_ascii_digit() {
        i += 1;
    }
    i
}

/// End of `-?(?:0|[1-9][0-9]*)` at `i` (None: no integer there).
fn int_end(v: &[u8], i: usize, signed: bool) -> Option<usize> {
    let mut j = i;
    if signed && j < v.len() && v[j] == b'-' {
        j += 1;
    }
    match v.get(j) {
        Some(b'0') => Some(j + 1),
        Some(b'1'..=b'9') => Some(digits_end(v, j + 1)),
        _ => None,
    }
}

/// `b` (a JSON integer, ASCII) as i64; None beyond 64 bits.
fn parse_int(b: &[u8]) -> Option<i64> {
    let (negative, digits) = match b.first() {
        Some(b'-') => (true, &b[1..]),
        _ => (false, b),
    };
    if digits.len() > 18 {
        // may overflow: the library checks
        return std::str::from_utf8(b).ok()?.parse::<i64>().ok();
    }
    let m = digits.iter().fold(0i64, |m, d| m * 10 + i64::from(d - b'0'));
    Some(if negative { -m } else { m })
}

const POW10: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

/// The JSON number at `i` (integer part, optional fraction, optional exponent): its end and its value, correctly
/// rounded (as `str::parse`). Without an exponent and with at most 15 digits, the digits are an integer below 2^53
/// and the divisor a power of ten below 2^53: both exact, so the one division is correctly rounded (Clinger's fast
/// path); other numbers go to the library.
fn number(v: &[u8], i: usize, signed: bool) -> Option<(usize, Option<f64>)> {
    let negative = signed && v.get(i) == Some(&b'-');
    let start = if negative { i + 1 } else { i };
    let mut m = 0u64;
    let mut j = start;
    match v.get(j) {
        Some(b'0') => j += 1,
        Some(b'1'..=b'9') => {
            while let Some(&c @ b'0'..=b'9') = v.get(j) {
                m = m.wrapping_mul(10).wrapping_add(u64::from(c - b'0'));
                j += 1;
            }
        }
        _ => return None,
    }
    let mut scale = 0usize;
    if v.get(j) == Some(&b'.') {
        let k = j + 1;
        j = k;
        while let Some(&c @ b'0'..=b'9') = v.get(j) {
            m = m.wrapping_mul(10).wrapping_add(u64::from(c - b'0'));
            j += 1;
        }
        if j == k {
            return None;
        }
        scale = j - k;
    }
    let digits = j - start - usize::from(scale > 0);
    if matches!(v.get(j), Some(b'e') | Some(b'E')) {
        let mut k = j + 1;
        if matches!(v.get(k), Some(b'+') | Some(b'-')) {
            k += 1;
        }
        let e = digits_end(v, k);
        if e == k {
            return None;
        }
        return Some((e, library_f64(&v[i..e])));
    }
    if digits <= 15 {
        let x = m as f64 / POW10[scale];
        return Some((j, Some(if negative { -x } else { x })));
    }
    Some((j, library_f64(&v[i..j])))
}

fn library_f64(b: &[u8]) -> Option<f64> {
    std::str::from_utf8(b).ok()?.parse::<f64>().ok()
}

/// The contents of a plain string `"..."` at `i` (no escapes, no control characters, valid UTF-8) and its end.
fn plain_str(v: &[u8], i: usize) -> Option<(&str, usize)> {
    if v.get(i) != Some(&b'"') {
        return None;
    }
    let mut j = i + 1;
    let mut ascii = true;
    while let Some(&b) = v.get(j) {
        match PLAIN[b as usize] {
            0 => {}
            2 => ascii = false,
            _ => break,
        }
        j += 1;
    }
    if v.get(j) != Some(&b'"') {
        return None;
    }
    let bytes = &v[i + 1..j];
    let text = if ascii {
        // SAFETY: every byte is below 0x80: ASCII is UTF-8
        unsafe { std::str::from_utf8_unchecked(bytes) }
    } else {
        std::str::from_utf8(bytes).ok()?
    };
    Some((text, j))
}

/// End of a JSON string with the escapes JSON allows at `i`.
fn json_str_end(v: &[u8], i: usize) -> Option<usize> {
    if v.get(i) != Some(&b'"') {
        return None;
    }
    let mut j = i + 1;
    loop {
        match v.get(j)? {
            b'"' => return Some(j + 1),
            b'\\' => match v.get(j + 1)? {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => j += 2,
                b'u' => {
                    let hex = v.get(j + 2..j + 6)?;
                    if !hex.iter().all(u8::is_ascii_hexdigit) {
                        return None;
                    }
                    j += 6;
                }
                _ => return None,
            },
            &b if b < 0x20 => return None,
            _ => j += 1,
        }
    }
}

impl Template {
    pub fn new(
        literals: Vec<Vec<u8>>,
        kinds: Vec<Kind>,
        names: Vec<String>,
    ) -> Result<Template, String> {
        if literals.len() != kinds.len() + 1 || names.len() != kinds.len() {
            return Err(
                "a template needs one literal more than kinds, and one name per kind".into(),
            );
        }
        for lit in &literals[1..] {
            match lit.first() {
                Some(b',') | Some(b'}') => {}
                _ => return Err("every literal after a field must start with ',' or '}'".into()),
            }
        }
        Ok(Template {
            literals,
            kinds,
            names,
        })
    }

    fn columns(&self, capacity: usize) -> Columns {
        let builders = self
            .kinds
            .iter()
            .map(|k| match k {
                Kind::Str | Kind::StrNonEmpty => {
                    Builder::Str(StringViewBuilder::with_capacity(capacity))
                }
                Kind::Int => Builder::Int(Int64Builder::with_capacity(capacity)),
                Kind::NumNonNeg => Builder::Num(Float64Builder::with_capacity(capacity)),
                Kind::NumOrNull => Builder::NumOrNull(
                    Float64Builder::with_capacity(capacity),
                    BooleanBuilder::with_capacity(capacity),
                ),
                Kind::JsonInt | Kind::JsonStr => Builder::None,
            })
            .collect();
        Columns {
            matched: BooleanBuilder::with_capacity(capacity),
            builders,
        }
    }

    /// The fields of `value` when it follows the template exactly.
    fn scan<'a>(&self, value: &'a [u8], got: &mut Vec<Got<'a>>) -> bool {
        got.clear();
        // every byte outside the strings is matched against ASCII (literals, digits, signs), so the value is
        // UTF-8 exactly when each string's contents are: only those are checked
        let v = value;
        let mut i = 0usize;
        for (n, kind) in self.kinds.iter().enumerate() {
            let lit = &self.literals[n];
            if !has_at(v, i, lit) {
                return false;
            }
            i += lit.len();
            match kind {
                Kind::Str | Kind::StrNonEmpty => {
                    let Some((t, end)) = plain_str(v, i) else {
                        return false;
                    };
                    if *kind == Kind::StrNonEmpty && t.is_empty() {
                        return false;
                    }
                    got.push(Got::Text(t));
                    i = end + 1;
                }
                Kind::Int => {
                    let Some(e) = int_end(v, i, true) else {
                        return false;
                    };
                    got.push(Got::Int(parse_int(&v[i..e])));
                    i = e;
                }
                Kind::NumNonNeg => {
                    let Some((e, x)) = number(v, i, false) else {
                        return false;
                    };
                    got.push(Got::Num(x, true));
                    i = e;
                }
                Kind::NumOrNull => {
                    if has_at(v, i, b"null") {
                        got.push(Got::Num(None, true));
                        i += 4;
                    } else {
                        let Some((e, x)) = number(v, i, true) else {
                            return false;
                        };
                        let plain = x.is_some_and(f64::is_finite) && &v[i..e] != b"-0";
                        got.push(Got::Num(x, plain));
                        i = e;
                    }
                }
                Kind::JsonInt => {
                    let Some(e) = int_end(v, i, true) else {
                        return false;
                    };
                    got.push(Got::Checked);
                    i = e;
                }
                Kind::JsonStr => {
                    let Some(e) = json_str_end(v, i) else {
                        return false;
                    };
                    if std::str::from_utf8(&v[i..e]).is_err() {
                        return false;
                    }
                    got.push(Got::Checked);
                    i = e;
                }
            }
        }
        &v[i..] == self.literals[self.kinds.len()].as_slice()
    }

    /// A struct array: `matched` (Boolean) and one column per captured field (null where not matched).
    pub fn decode<'a>(
        &self,
        values: impl Iterator<Item = Option<&'a [u8]>>,
        capacity: usize,
    ) -> StructArray {
        let mut cols = self.columns(capacity);
        let mut got = Vec::with_capacity(self.kinds.len());
        for value in values {
            let ok = value.is_some_and(|v| self.scan(v, &mut got));
            cols.matched.append_value(ok);
            for (n, b) in cols.builders.iter_mut().enumerate() {
                let g = if ok { got.get(n) } else { None };
                match (b, g) {
                    (Builder::Str(s), Some(Got::Text(t))) => s.append_value(t),
                    (Builder::Str(s), _) => s.append_null(),
                    (Builder::Int(s), Some(Got::Int(x))) => s.append_option(*x),
                    (Builder::Int(s), _) => s.append_null(),
                    (Builder::Num(s), Some(Got::Num(x, _))) => s.append_option(*x),
                    (Builder::Num(s), _) => s.append_null(),
                    (Builder::NumOrNull(s, p), Some(Got::Num(x, plain))) => {
                        s.append_option(*x);
                        p.append_value(*plain);
                    }
                    (Builder::NumOrNull(s, p), _) => {
                        s.append_null();
                        p.append_null();
                    }
                    (Builder::None, _) => {}
                }
            }
        }
        let mut fields = vec![Field::new("matched", DataType::Boolean, false)];
        let mut arrays: Vec<ArrayRef> = vec![Arc::new(cols.matched.finish())];
        for (n, b) in cols.builders.iter_mut().enumerate() {
            let name = &self.names[n];
            match b {
                Builder::Str(s) => {
                    fields.push(Field::new(name, DataType::Utf8View, true));
                    arrays.push(Arc::new(s.finish()));
                }
                Builder::Int(s) => {
                    fields.push(Field::new(name, DataType::Int64, true));
                    arrays.push(Arc::new(s.finish()));
                }
                Builder::Num(s) => {
                    fields.push(Field::new(name, DataType::Float64, true));
                    arrays.push(Arc::new(s.finish()));
                }
                Builder::NumOrNull(s, p) => {
                    fields.push(Field::new(name, DataType::Float64, true));
                    arrays.push(Arc::new(s.finish()));
                    fields.push(Field::new(format!("{name}_plain"), DataType::Boolean, true));
                    arrays.push(Arc::new(p.finish()));
                }
                Builder::None => {}
            }
        }
        StructArray::new(Fields::from(fields), arrays, None)
    }
}
