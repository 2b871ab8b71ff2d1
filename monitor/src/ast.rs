//! The syntax tree the parser produces. Every node keeps its span so that the checker, the
//! compiled machines and the explanations can point back at the source.
// Syntax-tree enums are built once per spec, never on the hot path: variant sizes do not matter.
#![allow(clippy::large_enum_variant)]

use crate::diag::Span;

#[derive(Debug, Clone, PartialEq)]
pub enum Lit {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Dur(i64),
    Str(String),
    /// `{}`: an empty map (keys are strings), filled by `set m[k] = v`.
    Map,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    NotIn,
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quant {
    All,
    Any,
    Count,
    /// `filter x in L: E`: the elements of `L` for which `E` holds.
    Filter,
}

/// The deepest syntax tree a spec may build, counting every level of parentheses, `not`, `-`,
/// lists, calls, `if`, field and index access, and every operand of a binary chain (`a and b
/// and c` is three levels). Every later phase (checking, macro expansion, evaluation, dropping
/// the tree) recurses over the tree, so this bound keeps them all within a small stack (tests
/// run them on 2 MiB threads).
pub const MAX_DEPTH: u32 = 64;

/// The same for monitor expressions (`and`, `or`, `not` and parentheses over monitors and
/// temporal forms), whose parser and compiler frames are larger: real specs nest two or three.
pub const MAX_MDEPTH: u32 = 32;

#[derive(Debug, Clone)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
    /// Height of this tree (a leaf is 1), computed on construction by [`Expr::new`].
    pub depth: u32,
}

impl Expr {
    /// A node, its depth one more than its deepest child's.
    pub fn new(kind: ExprKind, span: Span) -> Expr {
        let d = |e: &Expr| e.depth;
        let below = match &kind {
            ExprKind::Lit(_) | ExprKind::Name(_) => 0,
            ExprKind::List(v) | ExprKind::Call(_, v) => v.iter().map(d).max().unwrap_or(0),
            ExprKind::Field(a, _) | ExprKind::Neg(a) | ExprKind::Not(a) => d(a),
            ExprKind::Index(a, b) | ExprKind::Bin(_, a, b) => d(a).max(d(b)),
            ExprKind::Match { lhs, .. } => d(lhs),
            ExprKind::Quant { list, body, .. } => d(list).max(d(body)),
            ExprKind::If(a, b, c) => d(a).max(d(b)).max(d(c)),
        };
        Expr {
            kind,
            span,
            depth: below.saturating_add(1),
        }
    }
}

#[derive(Debug, Clone)]
pub enum ExprKind {
    Lit(Lit),
    Name(String),
    List(Vec<Expr>),
    Field(Box<Expr>, String),
    Index(Box<Expr>, Box<Expr>),
    Call(String, Vec<Expr>),
    Neg(Box<Expr>),
    Not(Box<Expr>),
    Bin(BinOp, Box<Expr>, Box<Expr>),
    Match {
        negated: bool,
        lhs: Box<Expr>,
        regex: String,
        regex_span: Span,
    },
    Quant {
        q: Quant,
        var: String,
        list: Box<Expr>,
        body: Box<Expr>,
    },
    If(Box<Expr>, Box<Expr>, Box<Expr>),
}

#[derive(Debug, Clone)]
pub struct Pattern {
    /// `None` = `event` (any source).
    pub source: Option<String>,
    pub kind: Option<String>,
    pub from: Option<Expr>,
    pub guard: Option<Expr>,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub enum Terminal {
    Stay,
    Goto {
        state: String,
        state_span: Span,
        timeout: Option<Expr>,
    },
    /// `accept [MSG] [with VALUE]`: the value is what an `expect ... as NAME` step binds.
    Accept(Option<Expr>, Option<Expr>),
    Fail(Option<Expr>),
    Inconclusive(Option<Expr>),
}

#[derive(Debug, Clone)]
pub struct Actions {
    pub sets: Vec<SetDecl>,
    pub terminal: Terminal,
    pub span: Span,
}

/// `set NAME = EXPR` or `set NAME[KEY] = EXPR` (one entry of the map in `NAME`).
#[derive(Debug, Clone)]
pub struct SetDecl {
    pub name: String,
    pub span: Span,
    pub key: Option<Expr>,
    pub value: Expr,
}

#[derive(Debug, Clone)]
pub enum On {
    Event(Pattern),
    Timeout,
    End,
}

#[derive(Debug, Clone)]
pub struct Handler {
    pub on: On,
    pub actions: Actions,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub struct StateDecl {
    pub name: String,
    pub span: Span,
    pub timeout: Option<Expr>,
    pub handlers: Vec<Handler>,
    /// Entered on a fault event, the state opens when the fault is done (`data.ended_ns`):
    /// its timeout counts from then and earlier events are not offered to it. Set by the
    /// `after P expect Q` sugar for its `waiting` state, never by written states.
    pub opens_when_fault_done: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    Bool,
    Int,
    Float,
    Str,
    Dur,
    List,
    Any,
}

impl Ty {
    pub fn name(self) -> &'static str {
        match self {
            Ty::Bool => "bool",
            Ty::Int => "int",
            Ty::Float => "float",
            Ty::Str => "str",
            Ty::Dur => "duration",
            Ty::List => "list",
            Ty::Any => "any",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Param {
    pub name: String,
    pub span: Span,
    pub ty: Ty,
    pub variadic: bool,
    pub default: Option<Expr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agg {
    Count,
    Sum,
    Mean,
    Min,
    Max,
    /// `latest(EXPR) by KEY`: a map from each key to its latest sample.
    Latest,
    /// `pNN(E)`: the NN-th percentile (nearest rank) of the samples, in hundredths of a percent
    /// (`p99` is 9900, `p999` is 9990, `p50` is 5000).
    Percentile(u16),
}

impl Agg {
    /// The percentile of an aggregate name `p` + digits: two digits are whole percents, more
    /// are decimals (`p50` 50 %, `p99` 99 %, `p999` 99.9 %, `p9999` 99.99 %), `p100` is the
    /// maximum; in hundredths of a percent.
    pub fn percentile_of(name: &str) -> Option<u16> {
        let digits = name.strip_prefix('p')?;
        if digits.len() < 2 || digits.len() > 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        if digits == "100" {
            return Some(10_000);
        }
        let whole: u16 = digits[..2].parse().ok()?;
        let frac = &digits[2..];
        let hundredths: u16 = match frac.len() {
            0 => 0,
            1 => frac.parse::<u16>().ok()? * 10,
            _ => frac.parse().ok()?,
        };
        Some(whole * 100 + hundredths)
    }
}

#[derive(Debug, Clone)]
pub enum WindowSize {
    Events(u64),
    Time(Expr),
}

#[derive(Debug, Clone)]
pub struct WindowDecl {
    pub name: String,
    pub span: Span,
    pub agg: Agg,
    pub expr: Option<Expr>,
    pub size: WindowSize,
    pub of: Option<Pattern>,
    /// The key of a `latest(EXPR) by KEY` window.
    pub by: Option<Expr>,
}

#[derive(Debug, Clone)]
pub struct MExpr {
    pub kind: MExprKind,
    pub span: Span,
    /// Height of this tree of `and`/`or`/`not` (a leaf is 1); see [`MExpr::new`].
    pub depth: u32,
}

impl MExpr {
    /// A node, its depth one more than its deepest child's (expressions inside leaves are
    /// bounded on their own).
    pub fn new(kind: MExprKind, span: Span) -> MExpr {
        let below = match &kind {
            MExprKind::And(a, b) | MExprKind::Or(a, b) => a.depth.max(b.depth),
            MExprKind::Not(a) => a.depth,
            _ => 0,
        };
        MExpr {
            kind,
            span,
            depth: below.saturating_add(1),
        }
    }
}

#[derive(Debug, Clone)]
pub enum MExprKind {
    And(Box<MExpr>, Box<MExpr>),
    Or(Box<MExpr>, Box<MExpr>),
    Not(Box<MExpr>),
    Ref {
        name: String,
        name_span: Span,
        args: Vec<Expr>,
        at: Option<Expr>,
    },
    Always(Pattern),
    Never(Pattern),
    Eventually(Pattern, Option<Expr>),
    After(Pattern, Pattern, Option<Expr>),
    Stable(Expr, Option<Pattern>),
}

#[derive(Debug, Clone)]
pub enum MonitorBody {
    Machine {
        vars: Vec<(String, Span, Expr)>,
        windows: Vec<WindowDecl>,
        states: Vec<StateDecl>,
    },
    Expr(MExpr),
}

#[derive(Debug, Clone)]
pub struct MonitorDecl {
    pub name: String,
    pub span: Span,
    pub params: Vec<Param>,
    pub per: Option<Expr>,
    pub body: MonitorBody,
}

#[derive(Debug, Clone)]
pub enum TargetDecl {
    Service(Expr),
    Container(Expr),
    Network(Expr),
    Services(Vec<Expr>),
    Random(Vec<Expr>),
    Between(Vec<Expr>, Vec<Expr>),
    FromTo(Vec<Expr>, Vec<Expr>),
}

#[derive(Debug, Clone)]
pub enum StepDecl {
    Expect {
        m: MExpr,
        within: Option<Expr>,
        /// `as NAME`: the name bound to the value the step's monitor accepted with.
        binds: Option<(String, Span)>,
        span: Span,
    },
    Do {
        action: String,
        args: Vec<(String, Expr)>,
        target: TargetDecl,
        dur: Option<Expr>,
        span: Span,
    },
    Note(String),
}

#[derive(Debug, Clone)]
pub enum Item {
    Import(String, Span),
    Let(String, Span, Expr),
    Def(String, Span, Vec<(String, Span)>, Expr),
    Monitor(MonitorDecl),
    Experiment {
        name: String,
        span: Span,
        steps: Vec<StepDecl>,
    },
}

#[cfg(test)]
mod percentile_names {
    use super::Agg;

    #[test]
    fn percentile_aggregate_names() {
        assert_eq!(Agg::percentile_of("p50"), Some(5000));
        assert_eq!(Agg::percentile_of("p99"), Some(9900));
        assert_eq!(Agg::percentile_of("p999"), Some(9990));
        assert_eq!(Agg::percentile_of("p9999"), Some(9999));
        assert_eq!(Agg::percentile_of("p100"), Some(10_000));
        assert_eq!(Agg::percentile_of("p05"), Some(500));
        for bad in ["p", "p5", "pxx", "p99999", "max", "q99"] {
            assert_eq!(Agg::percentile_of(bad), None, "{bad}");
        }
    }
}
