//! JMX object names the way `javax.management.ObjectName` treats them, for the Jolokia endpoint:
//! parsing with Java's `MalformedObjectNameException` messages (so invalid names are rejected as
//! real Jolokia rejects them), the canonical form (keys sorted, as Jolokia echoes names with
//! `canonicalNaming=true`), patterns (`*`/`?` in the domain or in values, a `*` property-list
//! pattern) and matching a pattern against a registered name.

/// A parsed object name or object name pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectName {
    domain: String,
    /// Key properties in the order given.
    props: Vec<(String, String)>,
    /// `,*` (or a bare `*`) in the property list: other keys may be present too.
    list_pattern: bool,
}

fn has_wildcard(s: &str) -> bool {
    s.contains('*') || s.contains('?')
}

impl ObjectName {
    /// Parses `domain:key=value,...`; the error is Java's MalformedObjectNameException message.
    pub fn parse(name: &str) -> Result<ObjectName, String> {
        if name.is_empty() {
            // Java: the empty name is the pattern "*:*".
            return Ok(ObjectName {
                domain: "*".into(),
                props: Vec::new(),
                list_pattern: true,
            });
        }
        let Some((domain, rest)) = name.split_once(':') else {
            return Err(if name.contains('=') {
                "Domain part must be specified".into()
            } else {
                "Key properties cannot be empty".into()
            });
        };
        if domain.contains('\n') {
            return Err("Invalid character '\\n' in domain name".into());
        }
        if rest.is_empty() {
            return Err("Key properties cannot be empty".into());
        }
        let chars: Vec<char> = rest.chars().collect();
        let mut props: Vec<(String, String)> = Vec::new();
        let mut list_pattern = false;
        let mut i = 0;
        while i < chars.len() {
            if chars[i] == '*' {
                if list_pattern {
                    return Err(
                        "Cannot have several '*' characters in pattern property list".into(),
                    );
                }
                list_pattern = true;
                i += 1;
                if i < chars.len() {
                    if chars[i] != ',' {
                        return Err(format!("Invalid character found: `{}'", chars[i]));
                    }
                    i += 1;
                    if i == chars.len() {
                        return Err("Invalid ending comma".into());
                    }
                }
                continue;
            }
            // Key part.
            let start = i;
            while i < chars.len() && chars[i] != '=' {
                match chars[i] {
                    ',' => return Err("Unterminated key property part".into()),
                    c @ (':' | '*' | '?' | '\n') => {
                        return Err(format!(
                            "Invalid character '{}' in key part of property",
                            c.escape_default()
                        ))
                    }
                    _ => i += 1,
                }
            }
            if i == chars.len() {
                return Err("Unterminated key property part".into());
            }
            let key: String = chars[start..i].iter().collect();
            if key.is_empty() {
                return Err("Invalid key (empty)".into());
            }
            i += 1; // '='
                    // Value part.
            let vstart = i;
            if i < chars.len() && chars[i] == '"' {
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err("Missing termination quote".into()),
                        Some('\\') => i += 2,
                        Some('"') => {
                            i += 1;
                            break;
                        }
                        Some(_) => i += 1,
                    }
                }
                if i < chars.len() && chars[i] != ',' {
                    return Err(format!("Invalid character '{}' after quote", chars[i]));
                }
            } else {
                while i < chars.len() && chars[i] != ',' {
                    match chars[i] {
                        c @ ('=' | ':' | '"' | '\n') => {
                            return Err(format!(
                                "Invalid character '{}' in value part of property",
                                c.escape_default()
                            ))
                        }
                        _ => i += 1,
                    }
                }
            }
            let value: String = chars[vstart..i.min(chars.len())].iter().collect();
            if value.is_empty() {
                return Err("Invalid value (empty)".into());
            }
            if props.iter().any(|(k, _)| *k == key) {
                return Err(format!("key `{key}' already defined"));
            }
            props.push((key, value));
            if i < chars.len() {
                // ','
                i += 1;
                if i == chars.len() {
                    return Err("Invalid ending comma".into());
                }
            }
        }
        if props.is_empty() && !list_pattern {
            return Err("Key properties cannot be empty".into());
        }
        Ok(ObjectName {
            domain: domain.to_string(),
            props,
            list_pattern,
        })
    }

    /// The canonical name: domain, keys in lexical order, `*` last for a property-list pattern.
    pub fn canonical(&self) -> String {
        let mut props: Vec<String> = self.props.iter().map(|(k, v)| format!("{k}={v}")).collect();
        props.sort();
        if self.list_pattern {
            props.push("*".into());
        }
        format!("{}:{}", self.domain, props.join(","))
    }

    /// True for patterns (`*`/`?` in the domain or an unquoted value, or a property-list pattern).
    pub fn is_pattern(&self) -> bool {
        self.list_pattern
            || has_wildcard(&self.domain)
            || self
                .props
                .iter()
                .any(|(_, v)| !v.starts_with('"') && has_wildcard(v))
    }

    /// Whether `name` (a plain name) is selected by this pattern (or equals this plain name).
    pub fn matches(&self, name: &ObjectName) -> bool {
        if !glob(&self.domain, &name.domain) {
            return false;
        }
        if !self.list_pattern && self.props.len() != name.props.len() {
            return false;
        }
        self.props.iter().all(|(k, pv)| {
            name.props.iter().any(|(nk, nv)| {
                nk == k
                    && if pv.starts_with('"') {
                        pv == nv
                    } else {
                        glob(pv, nv)
                    }
            })
        })
    }
}

/// `*` (any run) and `?` (one character) wildcards, as ObjectName patterns use them.
fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_canonicalises_and_rejects_like_java() {
        let n = ObjectName::parse("demo:type=Escaping,name=jmx/rmi!x y").unwrap();
        assert_eq!(n.canonical(), "demo:name=jmx/rmi!x y,type=Escaping");
        assert!(!n.is_pattern());
        assert_eq!(
            ObjectName::parse("not an object name").unwrap_err(),
            "Key properties cannot be empty"
        );
        assert_eq!(
            ObjectName::parse("akka:").unwrap_err(),
            "Key properties cannot be empty"
        );
        assert_eq!(
            ObjectName::parse("type=Cluster").unwrap_err(),
            "Domain part must be specified"
        );
        assert_eq!(
            ObjectName::parse("akka:type").unwrap_err(),
            "Unterminated key property part"
        );
        assert_eq!(
            ObjectName::parse("akka:=x").unwrap_err(),
            "Invalid key (empty)"
        );
        assert_eq!(
            ObjectName::parse("akka:type=a,type=b").unwrap_err(),
            "key `type' already defined"
        );
        assert_eq!(
            ObjectName::parse("akka:type=a,").unwrap_err(),
            "Invalid ending comma"
        );
        assert!(ObjectName::parse("akka:type=a:b").is_err());
    }

    #[test]
    fn patterns_match_registered_names() {
        let cluster = ObjectName::parse("akka:type=Cluster").unwrap();
        for p in [
            "akka:type=*",
            "*:type=Cluster",
            "ak?a:type=Clu*",
            "akka:*",
            "*:*",
            "",
        ] {
            let pat = ObjectName::parse(p).unwrap();
            assert!(pat.is_pattern(), "{p}");
            assert!(pat.matches(&cluster), "{p}");
        }
        for p in [
            "java.lang:type=*",
            "akka:type=Cluster,name=*",
            "akka:type=C",
        ] {
            assert!(!ObjectName::parse(p).unwrap().matches(&cluster), "{p}");
        }
        assert_eq!(
            ObjectName::parse("akka:type=Cluster,*")
                .unwrap()
                .canonical(),
            "akka:type=Cluster,*"
        );
        assert_eq!(ObjectName::parse("").unwrap().canonical(), "*:*");
    }
}
