//! Operations on evaluation values shared by the generic evaluator (`eval`) and the specialised
//! guards (`fast`): the lazily parsed `data` of an event ([`JsonCell`], [`data_of`]) and the
//! binary operators other than `and`/`or` ([`binop`]), with the run-time limits they enforce.

use crate::ast::BinOp;
use crate::value::V;
use std::cell::OnceCell;
use std::rc::Rc;
use trace::EventRef;

/// The longest string (bytes) or list (items) `+` builds at run time; longer is `null`.
pub(crate) const MAX_CONCAT: usize = 1 << 24;

/// The lazily parsed `data` of one event, shared by every guard that reads it.
pub(crate) type JsonCell = OnceCell<Option<serde_json::Value>>;

/// The value of an event's `data` (parsed at most once per event).
pub(crate) fn data_of<'a>(ev: &EventRef<'a>, json: &'a JsonCell) -> V<'a> {
    let Some(d) = ev.data else { return V::Null };
    match json.get_or_init(|| serde_json::from_str(d).ok()) {
        Some(j) => V::of_json(j),
        None => V::Null,
    }
}

/// A binary operator other than `and` and `or` (which short-circuit in the evaluator): comparisons
/// with the generic comparison rules, membership, arithmetic (overflow and division by zero give
/// null), list difference and concatenation (bounded by [`MAX_CONCAT`]).
pub(crate) fn binop<'a>(op: BinOp, l: &V<'a>, r: &V<'a>) -> V<'a> {
    use std::cmp::Ordering::*;
    use BinOp::*;
    match op {
        Eq => V::Bool(l.eq(r)),
        Ne => V::Bool(!l.eq(r)),
        Lt | Le | Gt | Ge => match l.cmp(r) {
            Some(o) => V::Bool(match op {
                Lt => o == Less,
                Le => o != Greater,
                Gt => o == Greater,
                _ => o != Less,
            }),
            None => V::Bool(false),
        },
        In => V::Bool(r.contains(l)),
        NotIn => V::Bool(!r.contains(l)),
        Add | Sub | Mul | Div | Rem => {
            if let (V::Int(a), V::Int(b)) = (l, r) {
                return match op {
                    Add => a.checked_add(*b).map(V::Int).unwrap_or(V::Null),
                    Sub => a.checked_sub(*b).map(V::Int).unwrap_or(V::Null),
                    Mul => a.checked_mul(*b).map(V::Int).unwrap_or(V::Null),
                    Div if *b == 0 => V::Null,
                    Div => V::Float(*a as f64 / *b as f64),
                    _ => a.checked_rem(*b).map(V::Int).unwrap_or(V::Null),
                };
            }
            if let (Some(a), Some(b)) = (l.as_f64(), r.as_f64()) {
                return match op {
                    Add => V::Float(a + b),
                    Sub => V::Float(a - b),
                    Mul => V::Float(a * b),
                    Div if b == 0.0 => V::Null,
                    Div => V::Float(a / b),
                    _ if b == 0.0 => V::Null,
                    _ => V::Float(a % b),
                };
            }
            if op == Sub {
                // list difference: the items of the left list that are not in the right one
                if let (Some(n), Some(_)) = (l.list_len(), r.list_len()) {
                    let v: Vec<V<'a>> = (0..n)
                        .map(|i| l.list_get(i))
                        .filter(|x| !r.contains(x))
                        .collect();
                    return V::L(Rc::new(v));
                }
            }
            if op == Add {
                // concatenation past MAX_CONCAT is null, like integer overflow: a variable
                // doubled on every event (`set s = s + s`) must not exhaust memory
                if let (Some(a), Some(b)) = (l.as_str(), r.as_str()) {
                    if a.len() + b.len() > MAX_CONCAT {
                        return V::Null;
                    }
                    return V::S(Rc::from(format!("{a}{b}")));
                }
                if let (Some(n), Some(m)) = (l.list_len(), r.list_len()) {
                    if n + m > MAX_CONCAT {
                        return V::Null;
                    }
                    let mut v = Vec::with_capacity(n + m);
                    v.extend((0..n).map(|i| l.list_get(i)));
                    v.extend((0..m).map(|i| r.list_get(i)));
                    return V::L(Rc::new(v));
                }
            }
            V::Null
        }
        And | Or => V::Null,
    }
}
