//! Run-time values: [`Value`] (owned: constants, parameters, variables, report excerpts) and the
//! borrowed evaluation value `V<'a>` that points into the event, its lazily parsed `data` JSON or
//! the instance state, so guards run without allocating.

use serde::Serialize;
use serde_json::Value as J;
use std::cmp::Ordering;
use std::rc::Rc;
use std::sync::Arc;

/// An owned value.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Value {
    #[default]
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// Nanoseconds; an int at run time, kept apart for display.
    Dur(i64),
    Str(Arc<str>),
    List(Arc<[Value]>),
    Json(Arc<J>),
}

impl Serialize for Value {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int(i) => s.serialize_i64(*i),
            Value::Float(f) => s.serialize_f64(*f),
            Value::Dur(d) => s.serialize_str(&fmt_dur(*d)),
            Value::Str(x) => s.serialize_str(x),
            Value::List(l) => l.serialize(s),
            Value::Json(j) => j.serialize(s),
        }
    }
}

/// `3s`, `250ms`, `1m30s`-style rendering of nanoseconds.
pub fn fmt_dur(ns: i64) -> String {
    let a = ns.unsigned_abs();
    let sign = if ns < 0 { "-" } else { "" };
    let (v, u) = if a == 0 {
        return "0s".into();
    } else if a.is_multiple_of(3_600_000_000_000) {
        (a / 3_600_000_000_000, "h")
    } else if a.is_multiple_of(60_000_000_000) {
        (a / 60_000_000_000, "m")
    } else if a.is_multiple_of(1_000_000_000) {
        (a / 1_000_000_000, "s")
    } else if a.is_multiple_of(1_000_000) {
        (a / 1_000_000, "ms")
    } else if a.is_multiple_of(1_000) {
        (a / 1_000, "us")
    } else {
        (a, "ns")
    };
    format!("{sign}{v}{u}")
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Dur(d) => f.write_str(&fmt_dur(*d)),
            Value::Str(s) => write!(f, "{:?}", &**s),
            Value::List(l) => {
                f.write_str("[")?;
                for (i, v) in l.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("]")
            }
            Value::Json(j) => write!(f, "{j}"),
        }
    }
}

impl Value {
    pub fn str(s: &str) -> Value {
        Value::Str(Arc::from(s))
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            Value::Json(j) => j.as_str(),
            _ => None,
        }
    }
    /// The value as JSON (durations as their nanoseconds, as at run time).
    pub fn to_json(&self) -> J {
        match self {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) | Value::Dur(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::Str(s) => J::String(s.to_string()),
            Value::List(l) => J::Array(l.iter().map(Value::to_json).collect()),
            Value::Json(j) => (**j).clone(),
        }
    }
    /// Converts a JSON value, keeping scalars as scalars.
    pub fn from_json(j: &J) -> Value {
        match j {
            J::Null => Value::Null,
            J::Bool(b) => Value::Bool(*b),
            J::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            J::String(s) => Value::str(s),
            other => Value::Json(Arc::new(other.clone())),
        }
    }
}

/// A value during evaluation, borrowing wherever it can.
#[allow(clippy::enum_variant_names)]
#[derive(Debug, Clone)]
pub(crate) enum V<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'a str),
    S(Rc<str>),
    J(&'a J),
    /// JSON built during evaluation (a map after `set m[k] = v`).
    M(Rc<J>),
    VList(&'a [Value]),
    L(Rc<Vec<V<'a>>>),
}

impl<'a> V<'a> {
    pub fn of(v: &'a Value) -> V<'a> {
        match v {
            Value::Null => V::Null,
            Value::Bool(b) => V::Bool(*b),
            Value::Int(i) | Value::Dur(i) => V::Int(*i),
            Value::Float(f) => V::Float(*f),
            Value::Str(s) => V::Str(s),
            Value::List(l) => V::VList(l),
            Value::Json(j) => V::of_json(j),
        }
    }
    pub fn of_json(j: &'a J) -> V<'a> {
        match j {
            J::Null => V::Null,
            J::Bool(b) => V::Bool(*b),
            J::Number(n) => match n.as_i64() {
                Some(i) => V::Int(i),
                None => V::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            J::String(s) => V::Str(s),
            _ => V::J(j),
        }
    }
    /// [`V::of_json`] of JSON that is not borrowed for `'a` (copied).
    pub fn of_json_owned(j: &J) -> V<'a> {
        match j {
            J::Null => V::Null,
            J::Bool(b) => V::Bool(*b),
            J::Number(n) => match n.as_i64() {
                Some(i) => V::Int(i),
                None => V::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            J::String(s) => V::S(Rc::from(s.as_str())),
            _ => V::M(Rc::new(j.clone())),
        }
    }
    /// The JSON this value is, for objects and arrays.
    pub fn json_ref(&self) -> Option<&J> {
        match self {
            V::J(j) => Some(j),
            V::M(j) => Some(j),
            _ => None,
        }
    }
    /// The object (map) this value is.
    pub fn as_map(&self) -> Option<&serde_json::Map<String, J>> {
        self.json_ref().and_then(J::as_object)
    }
    pub fn to_value(&self) -> Value {
        match self {
            V::Null => Value::Null,
            V::Bool(b) => Value::Bool(*b),
            V::Int(i) => Value::Int(*i),
            V::Float(f) => Value::Float(*f),
            V::Str(s) => Value::str(s),
            V::S(s) => Value::str(s),
            V::J(j) => Value::Json(Arc::new((*j).clone())),
            V::M(j) => Value::Json(Arc::new((**j).clone())),
            V::VList(l) => Value::List(Arc::from(*l)),
            V::L(l) => Value::List(l.iter().map(|v| v.to_value()).collect()),
        }
    }
    pub fn truthy(&self) -> bool {
        matches!(self, V::Bool(true))
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            V::Str(s) => Some(s),
            V::S(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            V::Int(i) => Some(*i as f64),
            V::Float(f) => Some(*f),
            _ => None,
        }
    }
    pub fn is_null(&self) -> bool {
        matches!(self, V::Null)
    }
    pub fn list_len(&self) -> Option<usize> {
        match self {
            V::J(J::Array(a)) => Some(a.len()),
            V::M(j) => j.as_array().map(Vec::len),
            V::VList(l) => Some(l.len()),
            V::L(l) => Some(l.len()),
            _ => None,
        }
    }
    pub fn list_get(&self, i: usize) -> V<'a> {
        match self {
            V::J(J::Array(a)) => a.get(i).map(V::of_json).unwrap_or(V::Null),
            V::M(j) => j.get(i).map(V::of_json_owned).unwrap_or(V::Null),
            V::VList(l) => l.get(i).map(V::of).unwrap_or(V::Null),
            V::L(l) => l.get(i).cloned().unwrap_or(V::Null),
            _ => V::Null,
        }
    }
    pub fn field(&self, name: &str) -> V<'a> {
        match self {
            V::J(J::Object(m)) => m.get(name).map(V::of_json).unwrap_or(V::Null),
            V::M(j) => j.get(name).map(V::of_json_owned).unwrap_or(V::Null),
            _ => V::Null,
        }
    }
    pub fn index(&self, idx: &V<'a>) -> V<'a> {
        match idx {
            V::Int(i) => {
                let Some(n) = self.list_len() else {
                    return V::Null;
                };
                let i = if *i < 0 { n as i64 + *i } else { *i };
                if i < 0 {
                    V::Null
                } else {
                    self.list_get(i as usize)
                }
            }
            other => match other.as_str() {
                Some(s) => self.field(s),
                None => V::Null,
            },
        }
    }
    pub fn len(&self) -> Option<i64> {
        match self {
            V::Null => Some(0),
            V::J(J::Object(m)) => Some(m.len() as i64),
            V::M(j) if j.is_object() => Some(j.as_object().map_or(0, |m| m.len()) as i64),
            _ => {
                if let Some(s) = self.as_str() {
                    Some(s.chars().count() as i64)
                } else {
                    self.list_len().map(|n| n as i64)
                }
            }
        }
    }
    pub fn eq(&self, o: &V<'_>) -> bool {
        match (self, o) {
            (V::Null, V::Null) => true,
            (V::Null, _) | (_, V::Null) => false,
            (V::Bool(a), V::Bool(b)) => a == b,
            (V::Int(a), V::Int(b)) => a == b,
            _ => {
                if let (Some(a), Some(b)) = (self.as_f64(), o.as_f64()) {
                    return a == b;
                }
                if let (Some(a), Some(b)) = (self.as_str(), o.as_str()) {
                    return a == b;
                }
                if let (Some(n), Some(m)) = (self.list_len(), o.list_len()) {
                    return n == m && (0..n).all(|i| self.list_get(i).eq(&o.list_get(i)));
                }
                match (self.json_ref(), o.json_ref()) {
                    (Some(a), Some(b)) => a == b,
                    _ => false,
                }
            }
        }
    }
    pub fn cmp(&self, o: &V<'_>) -> Option<Ordering> {
        if let (V::Int(a), V::Int(b)) = (self, o) {
            return Some(a.cmp(b));
        }
        if let (Some(a), Some(b)) = (self.as_f64(), o.as_f64()) {
            return a.partial_cmp(&b);
        }
        if let (Some(a), Some(b)) = (self.as_str(), o.as_str()) {
            return Some(a.cmp(b));
        }
        None
    }
    pub fn contains(&self, x: &V<'_>) -> bool {
        if let Some(n) = self.list_len() {
            return (0..n).any(|i| self.list_get(i).eq(x));
        }
        match (self.as_str(), x.as_str()) {
            (Some(h), Some(n)) => h.contains(n),
            _ => match (self.as_map(), x.as_str()) {
                (Some(m), Some(k)) => m.contains_key(k),
                _ => false,
            },
        }
    }
    /// Short human rendering for explanations.
    pub fn show(&self) -> String {
        let s = match self {
            V::Null => "null".to_string(),
            V::Bool(b) => b.to_string(),
            V::Int(i) => i.to_string(),
            V::Float(f) => f.to_string(),
            V::Str(s) => format!("{s:?}"),
            V::S(s) => format!("{:?}", &**s),
            V::J(j) => j.to_string(),
            V::M(j) => j.to_string(),
            other => other.to_value().to_string(),
        };
        excerpt(&s, 160)
    }
}

/// Cuts text to at most `n` characters, marking the cut.
pub fn excerpt(s: &str, n: usize) -> String {
    let mut t = String::new();
    excerpt_into(&mut t, s, n);
    t
}

/// [`excerpt`] into a reused buffer (cleared first).
pub fn excerpt_into(t: &mut String, s: &str, n: usize) {
    t.clear();
    if s.len() <= n {
        // at most n bytes, so at most n characters
        t.push_str(s);
        return;
    }
    match s.char_indices().nth(n) {
        None => t.push_str(s),
        Some((cut, _)) => {
            t.push_str(&s[..cut]);
            t.push('…');
        }
    }
}

/// Renders trace time (UTC, RFC 3339 with nanoseconds), as every crate does
/// ([`trace::time::format_rfc3339_nanos`]).
pub fn fmt_ts(ns: i64) -> String {
    trace::time::format_rfc3339_nanos(ns)
}
