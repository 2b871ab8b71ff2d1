//! Row-group statistics of `events.parquet` as plain values ([`GroupStats`]): for each row group
//! its row count and, for the columns a monitor's guard can compare (`ts_ns`, `seq`, `source`,
//! `service`, `container`, `kind`, `message`), the bounds and null count its footer records.
//! Traces finalized by this version also list each group's distinct values of `source`,
//! `service`, `container` and `kind` in the footer (see [`mod@crate::finalize`]), which rule out a
//! value inside the bounds. A caller that can prove from these that no event of a group matters
//! to it reads the other groups only ([`crate::ReadOptions::row_groups`]); `analyzer check`
//! does so with the relevance its compiled spec computes. Everything here is what the footer
//! says: for a format v2 trace the footer is verified against the manifest's checksum before
//! anything is read from it.

use parquet::file::metadata::RowGroupMetaData;
use parquet::file::statistics::Statistics;

/// The recorded bounds of one text column in one row group. Bounds may be truncated (then not
/// `exact`) but always enclose every non-null value; `None` where the footer records none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StrStats {
    pub min: Option<Box<[u8]>>,
    pub max: Option<Box<[u8]>>,
    /// Both bounds are values of the column, not truncations of one.
    pub exact: bool,
    pub nulls: Option<u64>,
    /// Every distinct non-null value of the column in the group, where the footer lists them.
    pub values: Option<Box<[Box<str>]>>,
}

impl StrStats {
    /// Can some row's value be `v`? `false` only when the bounds or the null count prove no
    /// row holds it (byte-wise order, as Parquet orders UTF-8 and as `str` compares).
    pub fn may_equal(&self, v: &str, rows: u64) -> bool {
        if rows == 0 || self.nulls == Some(rows) {
            return false;
        }
        if let Some(vals) = &self.values {
            if !vals.iter().any(|x| &**x == v) {
                return false;
            }
        }
        match (&self.min, &self.max) {
            (Some(lo), Some(hi)) => &**lo <= v.as_bytes() && v.as_bytes() <= &**hi,
            _ => true,
        }
    }

    /// Does every row hold `v` (no null among them)? `true` only when the statistics prove it.
    pub fn all_equal(&self, v: &str, rows: u64) -> bool {
        let listed_alone = self
            .values
            .as_deref()
            .is_some_and(|vals| vals.len() == 1 && &*vals[0] == v);
        let bounds_equal = self.exact
            && self.min.as_deref() == Some(v.as_bytes())
            && self.max.as_deref() == Some(v.as_bytes());
        rows > 0 && self.nulls == Some(0) && (listed_alone || bounds_equal)
    }

    /// Can some row be null?
    pub fn may_be_null(&self) -> bool {
        self.nulls != Some(0)
    }
}

/// The statistics of one row group of `events.parquet`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupStats {
    pub rows: u64,
    /// Smallest and largest `ts_ns`.
    pub ts: Option<(i64, i64)>,
    /// Smallest and largest `seq`.
    pub seq: Option<(u64, u64)>,
    pub source: StrStats,
    pub service: StrStats,
    pub container: StrStats,
    pub kind: StrStats,
    pub message: StrStats,
}

impl GroupStats {
    /// Can some row's `source` read as `v`? The reader gives a null `source` as `""`.
    pub fn may_read_source(&self, v: &str) -> bool {
        may_read_non_null(&self.source, v, self.rows)
    }

    /// Can some row's `kind` read as `v`? The reader gives a null `kind` as `""`.
    pub fn may_read_kind(&self, v: &str) -> bool {
        may_read_non_null(&self.kind, v, self.rows)
    }

    /// The statistics of row group `rg` as the footer records them; `names` are the file's leaf
    /// column names in order.
    pub(crate) fn of(rg: &RowGroupMetaData, names: &[String]) -> GroupStats {
        let mut g = GroupStats {
            rows: rg.num_rows().max(0) as u64,
            ..Default::default()
        };
        for (i, name) in names.iter().enumerate() {
            let Some(s) = rg.columns().get(i).and_then(|c| c.statistics()) else {
                continue;
            };
            match name.as_str() {
                "ts_ns" => g.ts = int_bounds(s),
                // stored as INT64 with an unsigned logical type: the bounds' bits are the u64
                // values, ordered as unsigned
                "seq" => {
                    g.seq = match s {
                        Statistics::Int64(v) => match (v.min_opt(), v.max_opt()) {
                            (Some(lo), Some(hi)) => Some((*lo as u64, *hi as u64)),
                            _ => None,
                        },
                        _ => None,
                    }
                }
                "source" => g.source = str_stats(s),
                "service" => g.service = str_stats(s),
                "container" => g.container = str_stats(s),
                "kind" => g.kind = str_stats(s),
                "message" => g.message = str_stats(s),
                _ => {}
            }
        }
        g
    }
}

/// The distinct values the footer lists (the value of [`crate::finalize::GROUP_VALUES_KEY`])
/// put into `groups`, column by column. A listing that does not fit the file (not an object of
/// arrays of one entry per group, each a list of strings or `null`) is ignored whole: the
/// groups keep their bounds only.
pub(crate) fn apply_group_values(groups: &mut [GroupStats], json: &str) {
    let Ok(serde_json::Value::Object(cols)) = serde_json::from_str::<serde_json::Value>(json)
    else {
        return;
    };
    type Listed = Option<Box<[Box<str>]>>;
    let mut parsed: Vec<(String, Vec<Listed>)> = Vec::new();
    for (name, per_group) in cols {
        let Some(per_group) = per_group.as_array().filter(|a| a.len() == groups.len()) else {
            return;
        };
        let mut v = Vec::with_capacity(per_group.len());
        for g in per_group {
            match g {
                serde_json::Value::Null => v.push(None),
                serde_json::Value::Array(items) => {
                    let mut vals = Vec::with_capacity(items.len());
                    for x in items {
                        let Some(x) = x.as_str() else { return };
                        vals.push(Box::from(x));
                    }
                    v.push(Some(vals.into_boxed_slice()));
                }
                _ => return,
            }
        }
        parsed.push((name, v));
    }
    for (name, per_group) in parsed {
        for (g, vals) in groups.iter_mut().zip(per_group) {
            let c = match name.as_str() {
                "source" => &mut g.source,
                "service" => &mut g.service,
                "container" => &mut g.container,
                "kind" => &mut g.kind,
                "message" => &mut g.message,
                _ => continue,
            };
            c.values = vals;
        }
    }
}

/// Can some row of a column the reader never gives as null (it gives `""` instead) read as `v`?
fn may_read_non_null(c: &StrStats, v: &str, rows: u64) -> bool {
    (v.is_empty() && rows > 0 && c.may_be_null()) || c.may_equal(v, rows)
}

fn int_bounds(s: &Statistics) -> Option<(i64, i64)> {
    match s {
        Statistics::Int64(v) => Some((*v.min_opt()?, *v.max_opt()?)),
        _ => None,
    }
}

fn str_stats(s: &Statistics) -> StrStats {
    match s {
        Statistics::ByteArray(_) => StrStats {
            min: s.min_bytes_opt().map(Box::from),
            max: s.max_bytes_opt().map(Box::from),
            exact: s.min_is_exact() && s.max_is_exact(),
            nulls: s.null_count_opt(),
            values: None,
        },
        _ => StrStats {
            nulls: s.null_count_opt(),
            ..Default::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(lo: &str, hi: &str, nulls: u64) -> StrStats {
        StrStats {
            min: Some(lo.as_bytes().into()),
            max: Some(hi.as_bytes().into()),
            exact: true,
            nulls: Some(nulls),
            values: None,
        }
    }

    #[test]
    fn bounds_refute_values_outside_them_and_nothing_else() {
        let c = col("docker", "log", 0);
        assert!(c.may_equal("docker", 10));
        assert!(c.may_equal("fault", 10));
        assert!(c.may_equal("log", 10));
        assert!(!c.may_equal("packet", 10));
        assert!(!c.may_equal("a", 10));
        // no bounds: anything may be there
        assert!(StrStats::default().may_equal("x", 10));
        // all null: nothing equals a value
        let nulls = StrStats {
            nulls: Some(10),
            ..Default::default()
        };
        assert!(!nulls.may_equal("x", 10));
        assert!(!c.may_equal("docker", 0));
    }

    #[test]
    fn listed_values_refute_values_inside_the_bounds() {
        let mut c = col("docker", "log", 0);
        c.values = Some(vec![Box::from("docker"), Box::from("log")].into_boxed_slice());
        assert!(c.may_equal("docker", 10));
        assert!(!c.may_equal("fault", 10));
        assert!(!c.all_equal("log", 10));
        c.values = Some(vec![Box::from("log")].into_boxed_slice());
        // one listed value and no null: every row holds it, whatever the bounds say
        c.exact = false;
        assert!(c.all_equal("log", 10));
    }

    #[test]
    fn a_listing_that_does_not_fit_the_file_is_ignored() {
        let two = || vec![GroupStats::default(), GroupStats::default()];
        let mut g = two();
        apply_group_values(
            &mut g,
            r#"{"kind": [["a", "b"], null], "source": [["log"], ["x"]]}"#,
        );
        assert_eq!(g[0].kind.values.as_deref().map(<[_]>::len), Some(2));
        assert!(g[1].kind.values.is_none());
        assert_eq!(g[1].source.values.as_deref(), Some(&[Box::from("x")][..]));
        for bad in [
            r#"{"kind": [["a"]]}"#,
            r#"{"kind": [["a"], [1]]}"#,
            r#"{"kind": [["a"], "b"]}"#,
            r#"["kind"]"#,
            "not json",
        ] {
            let mut g = two();
            apply_group_values(&mut g, bad);
            assert!(g.iter().all(|g| g.kind.values.is_none()), "{bad}");
        }
    }

    #[test]
    fn all_equal_needs_exact_equal_bounds_and_no_null() {
        assert!(col("log", "log", 0).all_equal("log", 3));
        assert!(!col("log", "log", 1).all_equal("log", 3));
        assert!(!col("log", "logs", 0).all_equal("log", 3));
        let mut truncated = col("log", "log", 0);
        truncated.exact = false;
        assert!(!truncated.all_equal("log", 3));
        let unknown = StrStats {
            nulls: None,
            ..col("log", "log", 0)
        };
        assert!(!unknown.all_equal("log", 3));
    }
}
