//! A direct matcher ([`Plan`]) for regular expressions of a common shape, a literal then
//! literals and runs of one character class, with the regex crate's results.
//!
//! The shape: a literal, then literals and runs of one character class (`[0-9]+`, `\d{2,}`,
//! optionally captured), where every run is followed by a literal that cannot start inside it,
//! or ends the expression. `processed request (?P<n>\d+) in (?P<us>\d+) us` is one. Such an
//! expression can match at a given start in one way only (a run takes every character of its
//! class, as the next literal cannot begin with one), so the leftmost match is found by trying,
//! in order, each place the first literal occurs (a `memmem` search) and walking the rest
//! without backtracking. The regex crate's searchers give the same answer (property-tested
//! below); this skips their automaton for the walk. [`Plan::of`] returns `None` for any other
//! shape, and [`crate::re::Re`] then searches with the regex crate alone.

use regex_syntax::hir::{Class, Hir, HirKind};

/// One character class: ASCII members in a bitmap, others as sorted ranges.
#[derive(Debug, Clone)]
struct Cls {
    ascii: [u64; 2],
    /// Sorted, non-overlapping ranges of members above U+007F.
    wide: Vec<(char, char)>,
}

impl Cls {
    fn of(c: &Class) -> Option<Cls> {
        let mut ascii = [0u64; 2];
        let mut wide = Vec::new();
        let mut add = |lo: u32, hi: u32| {
            for b in lo..=hi.min(127) {
                ascii[(b / 64) as usize] |= 1 << (b % 64);
            }
            if hi > 127 {
                let lo = char::from_u32(lo.max(128))?;
                let hi = char::from_u32(hi)?;
                wide.push((lo, hi));
            }
            Some(())
        };
        match c {
            Class::Unicode(u) => {
                for r in u.iter() {
                    add(r.start() as u32, r.end() as u32)?;
                }
            }
            Class::Bytes(b) => {
                // bytes above 0x7F would match inside a multi-byte character
                for r in b.iter() {
                    if r.end() > 0x7F {
                        return None;
                    }
                    add(u32::from(r.start()), u32::from(r.end()))?;
                }
            }
        }
        Some(Cls { ascii, wide })
    }

    #[inline]
    fn has(&self, c: char) -> bool {
        let u = c as u32;
        if u < 128 {
            self.ascii[(u / 64) as usize] & (1 << (u % 64)) != 0
        } else {
            self.wide
                .binary_search_by(|&(lo, hi)| {
                    if hi < c {
                        std::cmp::Ordering::Less
                    } else if lo > c {
                        std::cmp::Ordering::Greater
                    } else {
                        std::cmp::Ordering::Equal
                    }
                })
                .is_ok()
        }
    }

    /// Bytes of the longest run of members at the start of `s`, at most `max` of them, and
    /// how many members it holds.
    #[inline]
    fn run(&self, s: &str, max: u32) -> (usize, u32) {
        let mut n = 0u32;
        if self.wide.is_empty() {
            // an ASCII class: a byte above 0x7F starts a character outside it
            let b = s.as_bytes();
            let mut i = 0;
            while i < b.len() && n < max {
                let x = b[i];
                if x >= 128 || self.ascii[(x / 64) as usize] & (1 << (x % 64)) == 0 {
                    break;
                }
                i += 1;
                n += 1;
            }
            return (i, n);
        }
        let mut len = 0;
        for c in s.chars() {
            if n >= max || !self.has(c) {
                break;
            }
            len += c.len_utf8();
            n += 1;
        }
        (len, n)
    }
}

#[derive(Debug, Clone)]
enum Item {
    Lit(Box<[u8]>, Option<u32>),
    /// A run of `min..=max` members of a class (greedy), maybe captured as group `cap`.
    Run {
        cls: Cls,
        min: u32,
        max: u32,
        cap: Option<u32>,
    },
}

/// The direct matcher of one expression (see the module doc).
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    first: memchr::memmem::Finder<'static>,
    first_cap: Option<u32>,
    rest: Vec<Item>,
    /// Capture groups of the expression, group 0 (the whole match) included.
    groups: usize,
}

/// Where a match of a [`Plan`] and its groups are: byte ranges by group index.
pub(crate) type Spans = [Option<(usize, usize)>];

impl Plan {
    /// The plan of `pattern` (compiled by the regex crate with its default options), when it
    /// has the shape of the module doc.
    pub(crate) fn of(pattern: &str) -> Option<Plan> {
        let hir = regex_syntax::Parser::new().parse(pattern).ok()?;
        let parts: Vec<&Hir> = match hir.kind() {
            HirKind::Concat(v) => v.iter().collect(),
            _ => vec![&hir],
        };
        let mut items = Vec::new();
        for h in parts {
            let (h, cap) = match h.kind() {
                HirKind::Capture(c) => (&*c.sub, Some(c.index)),
                _ => (h, None),
            };
            match h.kind() {
                HirKind::Literal(l) if !l.0.is_empty() => {
                    // adjacent literals (one of them captured) stay apart
                    items.push(Item::Lit(l.0.clone(), cap));
                }
                HirKind::Repetition(r) if r.greedy => {
                    let HirKind::Class(c) = r.sub.kind() else {
                        return None;
                    };
                    let max = r.max.unwrap_or(u32::MAX);
                    if max == 0 || r.min > max {
                        return None;
                    }
                    items.push(Item::Run {
                        cls: Cls::of(c)?,
                        min: r.min,
                        max,
                        cap,
                    });
                }
                HirKind::Class(c) => items.push(Item::Run {
                    cls: Cls::of(c)?,
                    min: 1,
                    max: 1,
                    cap,
                }),
                _ => return None,
            }
        }
        let mut it = items.into_iter();
        let (first, first_cap) = match it.next()? {
            Item::Lit(l, cap) => (l, cap),
            Item::Run { .. } => return None,
        };
        let rest: Vec<Item> = it.collect();
        // a run is followed by a literal whose first character it cannot take, or ends it
        for (i, item) in rest.iter().enumerate() {
            if let Item::Run { cls, .. } = item {
                match rest.get(i + 1) {
                    None => {}
                    Some(Item::Lit(l, _)) => {
                        let c = std::str::from_utf8(l).ok()?.chars().next()?;
                        if cls.has(c) {
                            return None;
                        }
                    }
                    Some(Item::Run { .. }) => return None,
                }
            }
        }
        std::str::from_utf8(&first).ok()?;
        let groups = hir.properties().explicit_captures_len() + 1;
        Some(Plan {
            first: memchr::memmem::Finder::new(&first[..]).into_owned(),
            first_cap,
            rest,
            groups,
        })
    }

    /// Capture groups, group 0 included (the length [`Plan::find`]'s spans need).
    pub(crate) fn groups(&self) -> usize {
        self.groups
    }

    /// The leftmost match in `hay`; with `spans` (at least [`Plan::groups`] long), where it and
    /// its groups are (cleared first).
    #[inline]
    pub(crate) fn find(&self, hay: &str, mut spans: Option<&mut Spans>) -> bool {
        let b = hay.as_bytes();
        let n = self.first.needle().len();
        let mut from = 0;
        while let Some(i) = self.first.find(&b[from..]) {
            let start = from + i;
            if let Some(end) = self.walk(hay, start + n, None) {
                if let Some(s) = spans.as_deref_mut() {
                    s.iter_mut().for_each(|x| *x = None);
                    s[0] = Some((start, end));
                    if let Some(g) = self.first_cap {
                        s[g as usize] = Some((start, start + n));
                    }
                    self.walk(hay, start + n, Some(s));
                }
                return true;
            }
            from = start + 1;
        }
        false
    }

    /// The end of the match whose first literal ends at `pos`, if the rest matches there.
    #[inline]
    fn walk(&self, hay: &str, mut pos: usize, mut spans: Option<&mut Spans>) -> Option<usize> {
        let last = self.rest.len().wrapping_sub(1);
        for (k, item) in self.rest.iter().enumerate() {
            let (len, cap) = match item {
                Item::Lit(l, cap) => {
                    if !hay.as_bytes().get(pos..)?.starts_with(l) {
                        return None;
                    }
                    (l.len(), cap)
                }
                Item::Run { cls, min, max, cap } => {
                    // a run followed by a literal must be whole (the literal cannot start
                    // inside it); one that ends the expression takes at most `max`
                    let limit = if k == last { *max } else { u32::MAX };
                    let (len, count) = cls.run(hay.get(pos..)?, limit);
                    if count < *min || count > *max {
                        return None;
                    }
                    (len, cap)
                }
            };
            if let (Some(s), Some(g)) = (spans.as_deref_mut(), cap) {
                s[*g as usize] = Some((pos, pos + len));
            }
            pos += len;
        }
        Some(pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use regex::Regex;

    fn same(pattern: &str, hay: &str) {
        let re = Regex::new(pattern).unwrap();
        let plan = Plan::of(pattern).unwrap_or_else(|| panic!("no plan for {pattern}"));
        let mut spans = vec![None; plan.groups()];
        let got = plan.find(hay, Some(&mut spans));
        match re.captures(hay) {
            None => assert!(!got, "{pattern} on {hay:?}: plan matched, regex did not"),
            Some(c) => {
                assert!(got, "{pattern} on {hay:?}: regex matched, plan did not");
                let want: Vec<_> = (0..c.len())
                    .map(|i| c.get(i).map(|m| (m.start(), m.end())))
                    .collect();
                assert_eq!(spans, want, "{pattern} on {hay:?}");
            }
        }
        assert_eq!(plan.find(hay, None), got);
    }

    #[test]
    fn the_shapes_it_takes_and_leaves() {
        for p in [
            r"processed request (?P<n>\d+) in (?P<us>\d+) us",
            "processed request [0-9]+ in [0-9]+ us",
            r"leader is (\w+)",
            r"a[0-9]{2,3}b",
            "x[a-c]y",
            "(abc)[0-9]*",
            "(?-u)id=[0-9]+;",
        ] {
            assert!(Plan::of(p).is_some(), "{p}");
        }
        for p in [
            r"\d+ us",              // starts with a run
            "a[0-9]+[0-9]b",        // a run followed by a run
            "a[a-z]+b",             // the literal can start inside the run
            "a.+b",                 // the same, with the dot
            "^a[0-9]+",             // an anchor
            "(?i)abc[0-9]+",        // case folding makes classes
            "a(b|c)[0-9]+",         // an alternation
            "a[0-9]+?b",            // lazy
            "a(?:[0-9]x)+",         // a repeated group
            r"(?-u)a[\x80-\xff]+b", // bytes that split characters
        ] {
            assert!(Plan::of(p).is_none(), "{p}");
        }
    }

    #[test]
    fn it_finds_what_the_regex_crate_finds() {
        let p = r"processed request (?P<n>\d+) in (?P<us>\d+) us";
        for hay in [
            "processed request 12 in 34 us",
            "[INFO] processed request 12 in 34 us, then processed request 5 in 6 us",
            "processed request  in 34 us",
            "processed request 12 in us processed request 1 in 2 us",
            "processed request processed request 7 in 8 us",
            "processed request ١٢ in ٣ us",
            "processed request 12 in 34 usx",
            "processed request 12 in 34",
            "",
            "processed request 12a in 3 us",
        ] {
            same(p, hay);
        }
        same(r"leader is (\w+)", "the leader is ñode-1, again");
        same("a[0-9]{2,3}b", "a1b a1234b a123b");
        same("a[0-9]{2,3}", "a1 a12345");
        same("(abc)[0-9]*", "xxabc");
        same("é[0-9]+", "e1 é12é");
        // the first literal's occurrences overlap: the match starts inside the first one
        same("aa[0-9]+", "aaa1");
        same("abab([0-9])", "ababab1");
    }

    /// Pieces of patterns, each with texts it matches or almost matches.
    const PIECES: &[(&str, [&str; 4])] = &[
        ("ab", ["ab", "a", "b", "abab"]),
        ("a", ["a", "aa", "b", "é"]),
        (" in ", [" in ", " in", "in ", " "]),
        ("é", ["é", "e", "éé", "ée"]),
        ("[0-9]+", ["1", "123", "", "٣"]),
        (r"\d+", ["1", "٣٤", "12", ""]),
        ("[0-9]{2,3}", ["12", "123", "1234", "1"]),
        ("([0-9]+)", ["7", "78", "", "x"]),
        ("(ab)", ["ab", "a", "abb", "b"]),
        ("[a-c]", ["a", "c", "d", "ab"]),
        ("[xy]*", ["", "x", "xyx", "z"]),
        (r"(\w+)", ["w", "ñ1_", "", "a b"]),
        ("[0-9]?", ["", "1", "12", "a"]),
        ("x", ["x", "xx", "", "y"]),
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]
        /// A pattern of pieces, and a text of the pieces' texts between noise: mostly near
        /// matches, where a wrong run length or a wrong start shows.
        #[test]
        fn plans_agree_with_the_regex_crate(
            ps in prop::collection::vec((0..PIECES.len(), 0..4usize), 1..6),
            noise in prop::collection::vec(prop::sample::select(vec!["", "a", "1", "x", "é", " "]), 3),
            twice in any::<bool>(),
        ) {
            let pattern: String = ps.iter().map(|&(i, _)| PIECES[i].0).collect();
            let inst: String = ps.iter().map(|&(i, j)| PIECES[i].1[j]).collect();
            let hay = if twice {
                format!("{}{inst}{}{inst}{}", noise[0], noise[1], noise[2])
            } else {
                format!("{}{inst}{}", noise[0], noise[1])
            };
            if let (Some(_), Ok(_)) = (Plan::of(&pattern), Regex::new(&pattern)) {
                same(&pattern, &hay);
            }
        }
    }
}
