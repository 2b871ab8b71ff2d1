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

/// Whether `a op b` holds for a comparison operator (`==`, `!=`, `<`, `<=`, `>`, `>=`) given
/// `a.cmp(b)`; `None` for any other operator.
#[inline]
pub(crate) fn order_holds(op: BinOp, o: std::cmp::Ordering) -> Option<bool> {
    use std::cmp::Ordering::*;
    Some(match op {
        BinOp::Eq => o == Equal,
        BinOp::Ne => o != Equal,
        BinOp::Lt => o == Less,
        BinOp::Le => o != Greater,
        BinOp::Gt => o == Greater,
        BinOp::Ge => o != Less,
        _ => return None,
    })
}

/// `a op b` for two integers and an arithmetic operator (`+ - * / %`): overflow and division by
/// zero give null, `/` a float; `None` for any other operator.
#[inline]
pub(crate) fn int_arith(op: BinOp, a: i64, b: i64) -> Option<V<'static>> {
    let int = |r: Option<i64>| r.map(V::Int).unwrap_or(V::Null);
    Some(match op {
        BinOp::Add => int(a.checked_add(b)),
        BinOp::Sub => int(a.checked_sub(b)),
        BinOp::Mul => int(a.checked_mul(b)),
        BinOp::Div if b == 0 => V::Null,
        BinOp::Div => V::Float(a as f64 / b as f64),
        BinOp::Rem => int(a.checked_rem(b)),
        _ => return None,
    })
}

/// A binary operator other than `and` and `or` (which short-circuit in the evaluator): comparisons
/// with the generic comparison rules, membership, arithmetic (overflow and division by zero give
/// null), list difference and concatenation (bounded by [`MAX_CONCAT`]).
pub(crate) fn binop<'a>(op: BinOp, l: &V<'a>, r: &V<'a>) -> V<'a> {
    use BinOp::*;
    match op {
        Eq => V::Bool(l.eq(r)),
        Ne => V::Bool(!l.eq(r)),
        Lt | Le | Gt | Ge => V::Bool(l.cmp(r).is_some_and(|o| order_holds(op, o) == Some(true))),
        In => V::Bool(r.contains(l)),
        NotIn => V::Bool(!r.contains(l)),
        Add | Sub | Mul | Div | Rem => {
            if let (V::Int(a), V::Int(b)) = (l, r) {
                if let Some(v) = int_arith(op, *a, *b) {
                    return v;
                }
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
