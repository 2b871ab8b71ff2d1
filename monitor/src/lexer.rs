//! The lexer: spec text to tokens with byte spans. Handles comments, hyphenated names
//! (`left-a`), duration literals (`3s`), raw strings (`r"..."`) and reports bad characters.

use crate::diag::{Sink, Span};

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    Name(String),
    Int(i64),
    Float(f64),
    Dur(i64),
    Str(String),
    LParen,
    RParen,
    LBrace,
    RBrace,
    LBracket,
    RBracket,
    Comma,
    Colon,
    Dot,
    Ellipsis,
    Arrow,
    Assign,
    EqEq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Plus,
    Minus,
    Star,
    Slash,
    Percent,
    Tilde,
    NotTilde,
    Eof,
}

impl Tok {
    pub fn describe(&self) -> String {
        match self {
            Tok::Name(n) => format!("`{n}`"),
            Tok::Int(i) => format!("number `{i}`"),
            Tok::Float(f) => format!("number `{f}`"),
            Tok::Dur(_) => "a duration".into(),
            Tok::Str(_) => "a string".into(),
            Tok::Eof => "end of file".into(),
            other => format!("`{}`", punct(other)),
        }
    }
}

fn punct(t: &Tok) -> &'static str {
    match t {
        Tok::LParen => "(",
        Tok::RParen => ")",
        Tok::LBrace => "{",
        Tok::RBrace => "}",
        Tok::LBracket => "[",
        Tok::RBracket => "]",
        Tok::Comma => ",",
        Tok::Colon => ":",
        Tok::Dot => ".",
        Tok::Ellipsis => "...",
        Tok::Arrow => "=>",
        Tok::Assign => "=",
        Tok::EqEq => "==",
        Tok::Ne => "!=",
        Tok::Lt => "<",
        Tok::Le => "<=",
        Tok::Gt => ">",
        Tok::Ge => ">=",
        Tok::Plus => "+",
        Tok::Minus => "-",
        Tok::Star => "*",
        Tok::Slash => "/",
        Tok::Percent => "%",
        Tok::Tilde => "~",
        Tok::NotTilde => "!~",
        _ => "?",
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub tok: Tok,
    pub span: Span,
}

pub(crate) const KEYWORDS: &[&str] = &[
    "monitor",
    "experiment",
    "state",
    "on",
    "where",
    "from",
    "timeout",
    "end",
    "goto",
    "stay",
    "accept",
    "fail",
    "inconclusive",
    "set",
    "var",
    "window",
    "let",
    "def",
    "import",
    "per",
    "at",
    "and",
    "or",
    "not",
    "in",
    "all",
    "any",
    "always",
    "never",
    "eventually",
    "within",
    "after",
    "expect",
    "for",
    "do",
    "note",
    "true",
    "false",
    "null",
    "if",
    "then",
    "else",
];

pub(crate) fn is_keyword(s: &str) -> bool {
    KEYWORDS.contains(&s)
}

fn unit_ns(u: &str) -> Option<f64> {
    Some(match u {
        "ns" => 1.0,
        "us" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        "m" => 60e9,
        "h" => 3600e9,
        _ => return None,
    })
}

/// A byte-order mark at the start of a file is skipped (editors on Windows write one).
const BOM: &str = "\u{feff}";

pub(crate) fn lex(file: u32, text: &str, sink: &mut Sink) -> Vec<Token> {
    let b = text.as_bytes();
    let mut i = if text.starts_with(BOM) { BOM.len() } else { 0 };
    let mut out = Vec::new();
    let sp = |a: usize, z: usize| Span::new(file, a, z);
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b'#' || (c == b'/' && b.get(i + 1) == Some(&b'/')) {
            // a comment ends at any line break: LF, CRLF or a lone CR (old Mac files)
            while i < b.len() && b[i] != b'\n' && b[i] != b'\r' {
                i += 1;
            }
            continue;
        }
        let start = i;
        // raw string
        if c == b'r' && b.get(i + 1) == Some(&b'"') {
            i += 2;
            let s0 = i;
            while i < b.len() && b[i] != b'"' {
                i += 1;
            }
            if i >= b.len() {
                sink.err(sp(start, start + 2), "unterminated raw string");
                break;
            }
            out.push(Token {
                tok: Tok::Str(text[s0..i].to_string()),
                span: sp(start, i + 1),
            });
            i += 1;
            continue;
        }
        if c.is_ascii_alphabetic() || c == b'_' {
            while i < b.len() {
                let d = b[i];
                let hyphen_inside = d == b'-'
                    && i + 1 < b.len()
                    && b[i + 1].is_ascii_alphanumeric()
                    && b[i - 1].is_ascii_alphanumeric();
                if d.is_ascii_alphanumeric() || d == b'_' || hyphen_inside {
                    i += 1;
                } else {
                    break;
                }
            }
            out.push(Token {
                tok: Tok::Name(text[start..i].to_string()),
                span: sp(start, i),
            });
            continue;
        }
        if c.is_ascii_digit() {
            while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'_') {
                i += 1;
            }
            let mut is_float = false;
            if i + 1 < b.len() && b[i] == b'.' && b[i + 1].is_ascii_digit() {
                is_float = true;
                i += 1;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
            }
            if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
                let mut j = i + 1;
                if j < b.len() && (b[j] == b'+' || b[j] == b'-') {
                    j += 1;
                }
                if j < b.len() && b[j].is_ascii_digit() {
                    is_float = true;
                    i = j;
                    while i < b.len() && b[i].is_ascii_digit() {
                        i += 1;
                    }
                }
            }
            let num: String = text[start..i].chars().filter(|c| *c != '_').collect();
            // unit suffix
            let u0 = i;
            while i < b.len() && b[i].is_ascii_alphabetic() {
                i += 1;
            }
            let unit = &text[u0..i];
            let val: f64 = num.parse().unwrap_or(0.0);
            if !unit.is_empty() {
                match unit_ns(unit) {
                    Some(mult) => out.push(Token {
                        tok: Tok::Dur((val * mult).round() as i64),
                        span: sp(start, i),
                    }),
                    None => sink.hint(
                        sp(u0, i),
                        format!("unknown duration unit `{unit}`"),
                        "units are ns, us, ms, s, m, h (e.g. `250ms`, `3s`)",
                    ),
                }
                continue;
            }
            let tok = if is_float {
                Tok::Float(val)
            } else {
                match num.parse::<i64>() {
                    Ok(v) => Tok::Int(v),
                    Err(_) => {
                        sink.err(sp(start, i), "integer literal out of range");
                        Tok::Int(0)
                    }
                }
            };
            out.push(Token {
                tok,
                span: sp(start, i),
            });
            continue;
        }
        if c == b'"' {
            i += 1;
            let mut s = String::new();
            let mut closed = false;
            while i < b.len() {
                let ch = text[i..].chars().next().unwrap_or('\0');
                if ch == '"' {
                    closed = true;
                    i += 1;
                    break;
                }
                if ch == '\n' || ch == '\r' {
                    break;
                }
                if ch == '\\' {
                    let e = text[i + 1..].chars().next().unwrap_or('\0');
                    match e {
                        'n' => s.push('\n'),
                        't' => s.push('\t'),
                        '\\' => s.push('\\'),
                        '"' => s.push('"'),
                        _ => {
                            sink.hint(
                                sp(i, i + 1 + e.len_utf8()),
                                format!("unknown escape `\\{e}`"),
                                "use r\"...\" raw strings for regexes",
                            );
                        }
                    }
                    i += 1 + e.len_utf8();
                    continue;
                }
                s.push(ch);
                i += ch.len_utf8();
            }
            if !closed {
                sink.err(sp(start, start + 1), "unterminated string");
            }
            out.push(Token {
                tok: Tok::Str(s),
                span: sp(start, i),
            });
            continue;
        }
        // compared as bytes: `text[i..i + 2]` would cut a multi-byte character in two
        let two = b.get(i..i + 2).unwrap_or(b"");
        let (tok, n) = match two {
            b"=>" => (Tok::Arrow, 2),
            b"==" => (Tok::EqEq, 2),
            b"!=" => (Tok::Ne, 2),
            b"<=" => (Tok::Le, 2),
            b">=" => (Tok::Ge, 2),
            b"!~" => (Tok::NotTilde, 2),
            _ => {
                if b[i..].starts_with(b"...") {
                    (Tok::Ellipsis, 3)
                } else {
                    let t = match c {
                        b'(' => Tok::LParen,
                        b')' => Tok::RParen,
                        b'{' => Tok::LBrace,
                        b'}' => Tok::RBrace,
                        b'[' => Tok::LBracket,
                        b']' => Tok::RBracket,
                        b',' => Tok::Comma,
                        b':' => Tok::Colon,
                        b'.' => Tok::Dot,
                        b'=' => Tok::Assign,
                        b'<' => Tok::Lt,
                        b'>' => Tok::Gt,
                        b'+' => Tok::Plus,
                        b'-' => Tok::Minus,
                        b'*' => Tok::Star,
                        b'/' => Tok::Slash,
                        b'%' => Tok::Percent,
                        b'~' => Tok::Tilde,
                        _ => {
                            let ch = text[i..].chars().next().unwrap_or('?');
                            if ch == '\u{feff}' {
                                sink.hint(
                                    sp(i, i + ch.len_utf8()),
                                    "unexpected byte-order mark",
                                    "a byte-order mark is only allowed at the start of a file",
                                );
                            } else if !ch.is_ascii() {
                                sink.hint(
                                    sp(i, i + ch.len_utf8()),
                                    format!("unexpected character `{ch}` (U+{:04X})", ch as u32),
                                    "names are ASCII letters, digits, `_` and inner `-`; other text goes in \"strings\"",
                                );
                            } else {
                                sink.err(
                                    sp(i, i + ch.len_utf8()),
                                    format!("unexpected character `{ch}`"),
                                );
                            }
                            i += ch.len_utf8();
                            continue;
                        }
                    };
                    (t, 1)
                }
            }
        };
        out.push(Token {
            tok,
            span: sp(i, i + n),
        });
        i += n;
    }
    out.push(Token {
        tok: Tok::Eof,
        span: sp(b.len(), b.len()),
    });
    out
}
