//! What a selection of monitors and experiments reads from a trace ([`Needs`]): the event
//! columns its expressions, patterns and `at` restrictions look at, and the sources whose events
//! can change its verdicts. Computed from the compiled spec alone (no I/O), so a caller can
//! project columns and filter sources when reading a trace (`analyzer check` does).
//!
//! Not included: the copies of events kept for explanations ([`crate::EventInfo`]: service,
//! container, kind and a message or `data` excerpt). A caller that reads fewer columns must
//! re-read the events a report names and put them back with [`crate::Report::refill_events`].

use crate::ir::{ActionsC, Ex, Machine, MonExpr, PatternC, TermC, WinSize, X};
use std::collections::BTreeSet;

/// Columns and sources a selection needs. `ts_ns` and `seq` are always needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Needs {
    pub service: bool,
    pub container: bool,
    pub kind: bool,
    pub message: bool,
    pub data: bool,
    /// The event's `source` is read: by a machine's or pattern's source, an expression, or a
    /// state that opens when the fault that led to it is done. (A source filter reads the
    /// column too, to filter, without handing it on.)
    pub source: bool,
    /// The sources whose events can matter; `None`: every source (some handler or window
    /// names no source).
    pub sources: Option<BTreeSet<String>>,
}

impl Needs {
    /// Nothing: no optional column, no source.
    pub fn nothing() -> Needs {
        Needs {
            service: false,
            container: false,
            kind: false,
            message: false,
            data: false,
            source: false,
            sources: Some(BTreeSet::new()),
        }
    }

    /// Every column and every source.
    pub fn everything() -> Needs {
        Needs {
            service: true,
            container: true,
            kind: true,
            message: true,
            data: true,
            source: true,
            sources: None,
        }
    }

    /// The column projection for the trace reader.
    pub fn columns(&self) -> trace::Columns {
        trace::Columns {
            source: self.source,
            service: self.service,
            container: self.container,
            kind: self.kind,
            message: self.message,
            data: self.data,
        }
    }

    /// Are events of `source` needed?
    pub fn keeps_source(&self, source: &str) -> bool {
        self.sources.as_ref().is_none_or(|s| s.contains(source))
    }

    /// Widens `self` by `other`.
    pub fn merge(&mut self, other: &Needs) {
        self.service |= other.service;
        self.container |= other.container;
        self.kind |= other.kind;
        self.message |= other.message;
        self.data |= other.data;
        self.source |= other.source;
        self.add_sources(other.sources.as_ref());
    }

    fn add_sources(&mut self, s: Option<&BTreeSet<String>>) {
        match (self.sources.as_mut(), s) {
            (Some(a), Some(b)) => a.extend(b.iter().cloned()),
            (Some(_), None) => self.sources = None,
            (None, _) => {}
        }
    }

    /// What an experiment's own machinery reads, besides its `expect` monitors: the fault
    /// events that record its `do` steps (matched by kind, service, container and `data`) and
    /// the recorder's step events.
    pub(crate) fn experiment() -> Needs {
        Needs {
            service: true,
            container: true,
            kind: true,
            message: false,
            data: true,
            source: true,
            sources: Some(
                ["fault", "recorder"]
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            ),
        }
    }

    /// What a monitor expression reads.
    pub(crate) fn of_expr(e: &MonExpr) -> Needs {
        let mut n = Needs::nothing();
        n.add_expr(e);
        n
    }

    /// What one machine reads (without its `at` restriction).
    pub(crate) fn of_machine(m: &Machine) -> Needs {
        let mut n = Needs::nothing();
        n.add_machine(m);
        n
    }

    fn add_expr(&mut self, e: &MonExpr) {
        match e {
            MonExpr::Ref(r) => {
                if r.at.is_some() {
                    // `at SERVICE` compares every event's service
                    self.service = true;
                }
                self.add_machine(&r.machine);
            }
            MonExpr::And(a, b) | MonExpr::Or(a, b) => {
                self.add_expr(a);
                self.add_expr(b);
            }
            MonExpr::Not(a) => self.add_expr(a),
        }
    }

    fn add_machine(&mut self, m: &Machine) {
        let srcs = m
            .sources
            .as_ref()
            .map(|v| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>());
        self.add_sources(srcs.as_ref());
        self.source |= m.sources.is_some();
        for x in m.per.iter().chain(m.vars.iter().map(|(_, x)| x)) {
            self.add_x(x);
        }
        for w in &m.windows {
            if let Some(x) = &w.by {
                self.add_x(x);
            }
            if let Some(x) = &w.expr {
                self.add_x(x);
            }
            if let WinSize::Time(x) = &w.size {
                self.add_x(x);
            }
            if let Some(p) = &w.of {
                self.add_pattern(p);
            }
        }
        for s in &m.states {
            if s.opens_when_fault_done {
                // the state opens when the fault event that led to it is done: whether the event
                // is a `fault` one, and its `data.ended_ns`
                self.source = true;
                self.data = true;
            }
            if let Some(x) = &s.timeout {
                self.add_x(x);
            }
            for h in &s.handlers {
                self.add_pattern(&h.pat);
                self.add_actions(&h.actions);
            }
            for (a, _) in s.on_timeout.iter().chain(s.on_end.iter()) {
                self.add_actions(a);
            }
        }
    }

    fn add_pattern(&mut self, p: &PatternC) {
        if p.kind.is_some() {
            self.kind = true;
        }
        self.source |= p.source.is_some();
        if let Some(f) = &p.from {
            // `from NAME` compares the event's service
            self.service = true;
            self.add_x(f);
        }
        if let Some(g) = &p.guard {
            self.add_x(g);
        }
    }

    fn add_actions(&mut self, a: &ActionsC) {
        for (_, k, x) in &a.sets {
            if let Some(k) = k {
                self.add_x(k);
            }
            self.add_x(x);
        }
        if let TermC::Accept(_, Some(w)) = &a.term {
            self.add_x(w);
        }
        match &a.term {
            TermC::Stay => {}
            TermC::Goto(_, x) | TermC::Accept(x, _) | TermC::Fail(x) | TermC::Inconclusive(x) => {
                if let Some(x) = x {
                    self.add_x(x);
                }
            }
        }
    }

    fn add_x(&mut self, x: &X) {
        match &x.k {
            Ex::Const(_)
            | Ex::Ts
            | Ex::Seq
            | Ex::Here
            | Ex::Key
            | Ex::Param(_)
            | Ex::Var(_)
            | Ex::Win(_)
            | Ex::Cap(_)
            | Ex::Local(_) => {}
            Ex::Source => self.source = true,
            Ex::Service => self.service = true,
            Ex::Container => self.container = true,
            Ex::Kind => self.kind = true,
            Ex::Message => self.message = true,
            Ex::Data => self.data = true,
            Ex::Field(b, _) | Ex::Neg(b) | Ex::Not(b) => self.add_x(b),
            Ex::Index(a, b) | Ex::Bin(_, a, b) => {
                self.add_x(a);
                self.add_x(b);
            }
            Ex::List(v) | Ex::Call(_, v) => v.iter().for_each(|x| self.add_x(x)),
            Ex::Match { lhs, .. } => self.add_x(lhs),
            Ex::Quant { list, body, .. } => {
                self.add_x(list);
                self.add_x(body);
            }
            Ex::If(a, b, c) => {
                self.add_x(a);
                self.add_x(b);
                self.add_x(c);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{compile, Runner, Selection, SourceFile};

    fn needs(text: &str, monitors: &[&str], experiments: &[&str]) -> Needs {
        let spec = match compile(&[SourceFile::new("t.spec", text)], &|_, _| None) {
            Ok(s) => s,
            Err(d) => panic!("spec does not compile:\n{}", d.render()),
        };
        let sel = Selection {
            monitors: monitors.iter().map(|s| s.to_string()).collect(),
            experiments: experiments.iter().map(|s| s.to_string()).collect(),
        };
        match Runner::new(&spec, &sel) {
            Ok(r) => r.needs(),
            Err(e) => panic!("bad selection: {e}"),
        }
    }

    fn set(v: &[&str]) -> Option<BTreeSet<String>> {
        Some(v.iter().map(|s| s.to_string()).collect())
    }

    fn cols(n: &Needs) -> [bool; 6] {
        [n.source, n.service, n.container, n.kind, n.message, n.data]
    }

    #[test]
    fn guard_over_kind_and_service_on_every_event() {
        let n = needs(
            r#"monitor g = never event where kind == "oom" and service != "x" and seq < 0"#,
            &[],
            &[],
        );
        assert_eq!(cols(&n), [false, true, false, true, false, false]);
        assert_eq!(n.sources, None);
    }

    #[test]
    fn source_prefilter_and_regex_over_message() {
        let n = needs(
            r#"monitor r = never log where message ~ r"took (?P<ms>\d+) ms" and int(ms) > 5"#,
            &[],
            &[],
        );
        assert_eq!(cols(&n), [true, false, false, false, true, false]);
        assert_eq!(n.sources, set(&["log"]));
    }

    #[test]
    fn nothing_but_the_source() {
        let n = needs("monitor b = never no_such_source", &[], &[]);
        assert_eq!(cols(&n), [true, false, false, false, false, false]);
        assert_eq!(n.sources, set(&["no_such_source"]));
    }

    #[test]
    fn keyed_machine_reads_only_what_its_key_reads() {
        let n = needs(
            "monitor k per seq % 100 {\n  state a { on event => goto b timeout 1h }\n  state b { on event => goto a on timeout => fail \"slow\" }\n}",
            &[],
            &[],
        );
        assert_eq!(cols(&n), [false; 6]);
        assert_eq!(n.sources, None);
    }

    #[test]
    fn data_fields_kind_patterns_and_sources_of_every_selected_monitor() {
        let text = "monitor a {\n  state s {\n    on jmx \"akka:type=Cluster\" where len(data.members) > 3 => fail \"big\"\n    on docker where container == \"c1\" => accept\n  }\n}\nmonitor b = never log where message ~ r\"x\"\n";
        let a = needs(text, &["a"], &[]);
        assert_eq!(cols(&a), [true, false, true, true, false, true]);
        assert_eq!(a.sources, set(&["docker", "jmx"]));
        let both = needs(text, &[], &[]);
        assert_eq!(cols(&both), [true, false, true, true, true, true]);
        assert_eq!(both.sources, set(&["docker", "jmx", "log"]));
        // only the selected monitor counts
        let b = needs(text, &["b"], &[]);
        assert_eq!(cols(&b), [true, false, false, false, true, false]);
        assert_eq!(b.sources, set(&["log"]));
    }

    #[test]
    fn at_service_needs_the_service_column() {
        let n = needs(
            "monitor up(node: str = \"a\") = never log where message == node\nmonitor m = up(\"x\") at left-a\n",
            &["m"],
            &[],
        );
        assert!(n.service && n.message && !n.data && !n.kind);
        assert_eq!(n.sources, set(&["log"]));
    }

    #[test]
    fn experiments_add_faults_and_recorder_steps() {
        let text = "monitor quiet = never log where message == \"boom\"\nexperiment e {\n  do pause on a\n  expect quiet within 5s\n}\n";
        let n = needs(text, &[], &["e"]);
        assert_eq!(cols(&n), [true; 6]);
        assert_eq!(n.sources, set(&["fault", "log", "recorder"]));
        let m = needs(text, &["quiet"], &[]);
        assert_eq!(cols(&m), [true, false, false, false, true, false]);
        assert_eq!(m.sources, set(&["log"]));
    }

    #[test]
    fn a_response_window_opening_when_its_fault_is_done_reads_source_and_data() {
        // `after P expect Q`: when P matched a `fault` event, the window opens at its
        // `data.ended_ns`, whatever P itself reads
        let n = needs(
            "monitor m = after event where seq > 3 expect event where seq < 0 within 1s",
            &[],
            &[],
        );
        assert_eq!(cols(&n), [true, false, false, false, false, true]);
        assert_eq!(n.sources, None);
        // a response window of `stable for` opens at its event: nothing more
        let s = needs("monitor s = stable for 1s of event where seq > 3", &[], &[]);
        assert_eq!(cols(&s), [false; 6]);
    }

    #[test]
    fn columns_and_keeps_source() {
        let mut n = Needs::nothing();
        assert!(!n.keeps_source("log"));
        n.merge(&Needs::experiment());
        assert!(n.keeps_source("fault") && !n.keeps_source("log"));
        assert_eq!(
            n.columns(),
            trace::Columns {
                source: true,
                service: true,
                container: true,
                kind: true,
                message: false,
                data: true
            }
        );
        n.merge(&Needs::everything());
        assert!(n.keeps_source("log"));
        assert_eq!(n.columns(), trace::Columns::ALL);
    }
}
