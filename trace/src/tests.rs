//! End-to-end tests of the crate: writer → log → finalize → reader, across the failure modes.

use std::path::Path;
use std::time::Duration;

use crate::gen::{self, GenConfig, Scenario};
use crate::{
    files, finalize, Columns, Event, Manifest, ReadOptions, Trace, TraceError, TraceWriter,
};

fn read_all(t: &Trace, o: &ReadOptions) -> Vec<Event> {
    let mut v = Vec::new();
    for b in t.events(o).unwrap() {
        let b = b.unwrap();
        assert!(!b.is_empty());
        v.extend(b.iter().map(|e| e.to_owned()));
    }
    v
}

fn sorted(mut v: Vec<Event>) -> Vec<Event> {
    v.sort_by_key(|e| (e.ts_ns, e.seq));
    v
}

fn cfg() -> GenConfig {
    GenConfig {
        duration: Duration::from_secs(30),
        log_rate: 50.0,
        scenario: Scenario::gc_pause("right-a", Duration::from_secs(10), Duration::from_secs(8)),
        disorder: Duration::from_millis(80),
        ..Default::default()
    }
}

/// 200 s at 400 log lines a second: a trace of several row groups.
fn several_groups() -> GenConfig {
    GenConfig {
        duration: Duration::from_secs(200),
        log_rate: 400.0,
        ..cfg()
    }
}

/// Writes the generated events and returns them with their assigned seqs.
fn write_unfinished(dir: &Path, c: &GenConfig) -> (TraceWriter, Vec<Event>) {
    let mut w = TraceWriter::create(dir, gen::manifest(c)).unwrap();
    let mut all = Vec::new();
    for mut e in gen::events(c) {
        e.seq = w.append(e.clone()).unwrap();
        all.push(e);
    }
    (w, all)
}

#[test]
fn written_events_come_back_sorted_and_intact() {
    let d = tempfile::tempdir().unwrap();
    let (mut w, all) = write_unfinished(d.path(), &cfg());
    // Unfinalized: read from the log, sorted on the fly.
    w.flush().unwrap();
    let t = Trace::open(d.path()).unwrap();
    assert!(!t.is_finalized());
    let expected = sorted(all.clone());
    assert_eq!(read_all(&t, &ReadOptions::default()), expected);
    let s = w.finish().unwrap();
    assert_eq!(s.events, all.len() as u64);
    assert!(!d.path().join(files::EVENTS_LOG).exists());
    let t = Trace::open(d.path()).unwrap();
    assert!(t.is_finalized());
    assert_eq!(read_all(&t, &ReadOptions::default()), expected);
    assert_eq!(t.parquet_facts().unwrap().0, all.len() as u64);
    // Finalizing again changes nothing.
    let again = finalize(d.path()).unwrap();
    assert!(again.already_finalized);
    assert_eq!(again.events, s.events);
}

#[test]
fn filters_and_projection() {
    let d = tempfile::tempdir().unwrap();
    let c = several_groups();
    let s = gen::write_trace(d.path(), &c).unwrap();
    assert!(
        s.row_groups > 1,
        "want several row groups, got {}",
        s.row_groups
    );
    let t = Trace::open(d.path()).unwrap();
    let all = read_all(&t, &ReadOptions::default());
    let since = c.start_ns + 50_000_000_000;
    let until = c.start_ns + 60_000_000_000;
    let o = ReadOptions {
        since_ns: Some(since),
        until_ns: Some(until),
        sources: Some(vec!["jmx".into(), "fault".into()]),
        ..Default::default()
    };
    let got = read_all(&t, &o);
    let want: Vec<Event> = all
        .iter()
        .filter(|e| {
            e.ts_ns >= since && e.ts_ns < until && (e.source == "jmx" || e.source == "fault")
        })
        .cloned()
        .collect();
    assert!(!want.is_empty());
    assert_eq!(got, want);
    let o = ReadOptions {
        columns: Columns::NONE,
        ..Default::default()
    };
    let got = read_all(&t, &o);
    assert_eq!(got.len(), all.len());
    assert!(got.iter().all(|e| e.message.is_none()
        && e.data.is_none()
        && e.service.is_none()
        && e.kind.is_empty()));
    assert_eq!(
        got.iter().map(|e| (e.ts_ns, e.seq)).collect::<Vec<_>>(),
        all.iter().map(|e| (e.ts_ns, e.seq)).collect::<Vec<_>>()
    );
}

/// A read without the `source` column shows every event's source as `""` (and counts none of a
/// named source), while a source filter still keeps only its sources and merged packets still
/// come with their source, as do the events beside them.
#[test]
fn reading_without_the_source_column() {
    let d = tempfile::tempdir().unwrap();
    let c = GenConfig {
        duration: Duration::from_secs(200),
        log_rate: 400.0,
        packet_rate: 20.0,
        ..cfg()
    };
    let s = gen::write_trace(d.path(), &c).unwrap();
    assert!(s.row_groups > 1 && s.packets > 0, "{s:?}");
    let t = Trace::open(d.path()).unwrap();
    let all = read_all(&t, &ReadOptions::default());
    let no_source = Columns {
        source: false,
        ..Columns::ALL
    };
    for read_ahead in [0, 2] {
        let o = ReadOptions {
            columns: no_source,
            read_ahead,
            ..Default::default()
        };
        let got = read_all(&t, &o);
        assert!(got.iter().all(|e| e.source.is_empty()));
        let blank = |e: &Event| Event {
            source: String::new(),
            ..e.clone()
        };
        assert_eq!(got, all.iter().map(blank).collect::<Vec<_>>());
        for b in t.events(&o).unwrap() {
            let b = b.unwrap();
            assert_eq!((b.count_source("log"), b.count_source("")), (0, b.len()));
        }
        // the filter reads the column to filter: the same rows as with it, shown without it
        let logs = read_all(
            &t,
            &ReadOptions {
                sources: Some(vec!["log".into()]),
                ..o.clone()
            },
        );
        let want: Vec<Event> = all
            .iter()
            .filter(|e| e.source == "log")
            .map(blank)
            .collect();
        assert!(!want.is_empty());
        assert_eq!(logs, want);
        // packets merged: every row shows its source
        let merged = read_all(
            &t,
            &ReadOptions {
                include_packets: true,
                ..o.clone()
            },
        );
        assert_eq!(merged.len() as u64, all.len() as u64 + s.packets);
        assert!(merged.iter().all(|e| !e.source.is_empty()));
        assert!(merged.iter().any(|e| e.source == "packet"));
    }
    // an unfinalized trace's log rows are filtered one by one, by the source read for that
    let u = tempfile::tempdir().unwrap();
    let (mut w, evs) = write_unfinished(u.path(), &cfg());
    w.flush().unwrap();
    let t = Trace::open(u.path()).unwrap();
    assert!(!t.is_finalized());
    let logs = read_all(
        &t,
        &ReadOptions {
            columns: no_source,
            sources: Some(vec!["log".into()]),
            ..Default::default()
        },
    );
    let want = sorted(evs)
        .into_iter()
        .filter(|e| e.source == "log")
        .count();
    assert!(want > 0);
    assert_eq!(logs.len(), want);
}

/// The footer's statistics of each row group (bounds, null counts, the listed distinct values)
/// hold for the events read from it, and `row_groups` reads exactly the groups marked.
#[test]
fn group_statistics_describe_their_events_and_a_mask_reads_only_its_groups() {
    let d = tempfile::tempdir().unwrap();
    let c = several_groups();
    let s = gen::write_trace(d.path(), &c).unwrap();
    assert!(s.row_groups > 2, "{s:?}");
    let t = Trace::open(d.path()).unwrap();
    let groups = t.group_stats().unwrap();
    assert_eq!(groups.len(), s.row_groups);
    let all = read_all(&t, &ReadOptions::default());
    let mut at = 0;
    for (i, g) in groups.iter().enumerate() {
        let evs = &all[at..at + g.rows as usize];
        at += g.rows as usize;
        let ts = (evs[0].ts_ns, evs[evs.len() - 1].ts_ns);
        assert_eq!(g.ts, Some(ts), "group {i}");
        let seqs = evs.iter().map(|e| e.seq);
        assert_eq!(g.seq, seqs.clone().min().zip(seqs.max()), "group {i}");
        let cols: [(&str, &crate::StrStats, Vec<Option<&str>>); 4] = [
            (
                "source",
                &g.source,
                evs.iter().map(|e| Some(e.source.as_str())).collect(),
            ),
            (
                "kind",
                &g.kind,
                evs.iter().map(|e| Some(e.kind.as_str())).collect(),
            ),
            (
                "service",
                &g.service,
                evs.iter().map(|e| e.service.as_deref()).collect(),
            ),
            (
                "container",
                &g.container,
                evs.iter().map(|e| e.container.as_deref()).collect(),
            ),
        ];
        for (name, st, vals) in cols {
            let mut distinct: Vec<&str> = vals.iter().flatten().copied().collect();
            distinct.sort_unstable();
            distinct.dedup();
            let listed: Vec<&str> = st.values.as_deref().unwrap().iter().map(|v| &**v).collect();
            assert_eq!(listed, distinct, "group {i}, {name}");
            let nulls = vals.iter().filter(|v| v.is_none()).count() as u64;
            assert_eq!(st.nulls, Some(nulls), "group {i}, {name}");
            if let (Some(lo), Some(hi)) = (distinct.first(), distinct.last()) {
                assert_eq!(st.min.as_deref(), Some(lo.as_bytes()), "group {i}, {name}");
                assert_eq!(st.max.as_deref(), Some(hi.as_bytes()), "group {i}, {name}");
            }
            for v in &distinct {
                assert!(st.may_equal(v, g.rows), "group {i}, {name}: {v}");
            }
            assert!(!st.may_equal("no such value", g.rows), "group {i}, {name}");
        }
    }
    assert_eq!(at, all.len());
    // every other group, by a mask
    let keep: Vec<bool> = (0..groups.len()).map(|i| i % 2 == 1).collect();
    let got = read_all(
        &t,
        &ReadOptions {
            row_groups: Some(keep.clone().into()),
            ..Default::default()
        },
    );
    let mut want = Vec::new();
    let mut at = 0;
    for (g, k) in groups.iter().zip(&keep) {
        if *k {
            want.extend_from_slice(&all[at..at + g.rows as usize]);
        }
        at += g.rows as usize;
    }
    assert!(!want.is_empty());
    assert_eq!(got, want);
    // on decoding threads too
    let got = read_all(
        &t,
        &ReadOptions {
            row_groups: Some(keep.into()),
            read_ahead: 2,
            ..Default::default()
        },
    );
    assert_eq!(got, want);
}

#[test]
fn packets_merge_into_the_event_stream() {
    let d = tempfile::tempdir().unwrap();
    let c = GenConfig {
        packet_rate: 100.0,
        ..cfg()
    };
    let s = gen::write_trace(d.path(), &c).unwrap();
    assert!(s.packets > 1000, "{s:?}");
    let t = Trace::open(d.path()).unwrap();
    let plain = read_all(&t, &ReadOptions::default());
    let merged = read_all(
        &t,
        &ReadOptions {
            include_packets: true,
            ..Default::default()
        },
    );
    assert_eq!(merged.len() as u64, plain.len() as u64 + s.packets);
    assert!(merged
        .windows(2)
        .all(|w| (w[0].ts_ns, w[0].seq) < (w[1].ts_ns, w[1].seq)));
    let p = merged.iter().find(|e| e.source == "packet").unwrap();
    assert_eq!(p.kind, "tcp");
    let data: serde_json::Value = serde_json::from_str(p.data.as_deref().unwrap()).unwrap();
    assert_eq!(data["dst_port"], 2552);
    assert!(data["tcp_flags"].is_string() && data["tcp_flags_bits"].is_number());
    // Seqs are unique across events and packets.
    let mut seqs: Vec<u64> = merged.iter().map(|e| e.seq).collect();
    seqs.sort();
    seqs.dedup();
    assert_eq!(seqs.len(), merged.len());
    let only = read_all(
        &t,
        &ReadOptions {
            include_packets: true,
            sources: Some(vec!["packet".into()]),
            ..Default::default()
        },
    );
    assert_eq!(only.len() as u64, s.packets);
}

#[test]
fn a_truncated_log_is_read_up_to_the_last_complete_batch_and_finalizes() {
    let d = tempfile::tempdir().unwrap();
    let (mut w, all) = write_unfinished(d.path(), &cfg());
    w.flush().unwrap();
    std::mem::forget(w); // as if killed: no finish
    let log = d.path().join(files::EVENTS_LOG);
    let len = std::fs::metadata(&log).unwrap().len();
    // Cut into the last message.
    let f = std::fs::OpenOptions::new().write(true).open(&log).unwrap();
    f.set_len(len - 100).unwrap();
    let t = Trace::open(d.path()).unwrap();
    let got = read_all(&t, &ReadOptions::default());
    assert!(
        got.len() < all.len() && got.len() + TraceWriter::MAX_BUFFERED >= all.len(),
        "{} of {}",
        got.len(),
        all.len()
    );
    assert!(got
        .windows(2)
        .all(|w| (w[0].ts_ns, w[0].seq) < (w[1].ts_ns, w[1].seq)));
    let s = finalize(d.path()).unwrap();
    assert!(s.truncated_log);
    assert_eq!(s.events, got.len() as u64);
    assert_eq!(
        read_all(&Trace::open(d.path()).unwrap(), &ReadOptions::default()),
        got
    );
}

#[test]
fn bad_input_gets_errors_naming_the_file() {
    let d = tempfile::tempdir().unwrap();
    let missing = d.path().join("nope");
    assert!(matches!(
        Trace::open(&missing),
        Err(TraceError::NotFound { .. })
    ));
    let e = Trace::open(d.path()).unwrap_err();
    assert!(e.to_string().contains("not a trace"), "{e}");

    let c = GenConfig {
        duration: Duration::from_secs(5),
        ..Default::default()
    };
    gen::write_trace(&d.path().join("t"), &c).unwrap();
    let t = d.path().join("t");
    let pq = t.join(files::EVENTS_PARQUET);
    let bytes = std::fs::read(&pq).unwrap();
    std::fs::write(&pq, &bytes[..bytes.len() / 2]).unwrap();
    let e = Trace::open(&t).unwrap_err().to_string();
    assert!(e.contains("events.parquet"), "{e}");
    std::fs::write(&pq, b"hello").unwrap();
    let e = Trace::open(&t).unwrap_err().to_string();
    assert!(e.contains("events.parquet"), "{e}");

    let mut m = Manifest::read(&t).unwrap();
    m.format_version = crate::FORMAT_VERSION + 1;
    m.write_atomic(&t).unwrap();
    assert!(matches!(
        Trace::open(&t),
        Err(TraceError::NewerVersion { .. })
    ));
    std::fs::write(t.join(files::MANIFEST), b"{not json").unwrap();
    let e = Trace::open(&t).unwrap_err().to_string();
    assert!(
        e.contains("manifest.json") && e.contains("invalid manifest"),
        "{e}"
    );
}

#[test]
fn writer_refuses_to_overwrite_a_trace() {
    let d = tempfile::tempdir().unwrap();
    let w = TraceWriter::create(d.path(), Manifest::default()).unwrap();
    drop(w);
    assert!(TraceWriter::create(d.path(), Manifest::default()).is_err());
}

#[test]
fn manifest_updates_are_visible_and_flush_interval_applies() {
    let d = tempfile::tempdir().unwrap();
    let mut w = TraceWriter::create(d.path(), Manifest::default()).unwrap();
    w.update_manifest(|m| m.run_id = "abc".into()).unwrap();
    assert_eq!(Manifest::read(d.path()).unwrap().run_id, "abc");
    w.append(Event::new(1, "note", "note").message("first"))
        .unwrap();
    std::thread::sleep(TraceWriter::FLUSH_INTERVAL + Duration::from_millis(20));
    w.append(Event::new(2, "note", "note").message("second"))
        .unwrap();
    // Both are on disk now without an explicit flush.
    let t = Trace::open(d.path()).unwrap();
    assert_eq!(read_all(&t, &ReadOptions::default()).len(), 2);
    std::mem::forget(w);
}

#[test]
fn an_empty_log_reads_as_no_events_and_finalizes() {
    let d = tempfile::tempdir().unwrap();
    let w = TraceWriter::create(d.path(), Manifest::default()).unwrap();
    std::mem::forget(w);
    // As if killed before the stream header reached the file.
    std::fs::write(d.path().join(files::EVENTS_LOG), b"").unwrap();
    let t = Trace::open(d.path()).unwrap();
    assert!(read_all(&t, &ReadOptions::default()).is_empty());
    let s = finalize(d.path()).unwrap();
    assert_eq!(s.events, 0);
    assert!(s.truncated_log);
    assert!(read_all(&Trace::open(d.path()).unwrap(), &ReadOptions::default()).is_empty());
}

/// Every batch of a read, as owned events, batch by batch.
fn batches(t: &Trace, o: &ReadOptions) -> Vec<Vec<Event>> {
    t.events(o)
        .unwrap()
        .map(|b| b.unwrap().iter().map(|e| e.to_owned()).collect())
        .collect()
}

/// A copy of the finalized trace in `dir` as format v1 (no checksums: row groups are read
/// without verification), in `dir/v1`.
fn v1_copy(dir: &Path) -> std::path::PathBuf {
    let v1 = dir.join("v1");
    std::fs::create_dir(&v1).unwrap();
    std::fs::copy(
        dir.join(files::EVENTS_PARQUET),
        v1.join(files::EVENTS_PARQUET),
    )
    .unwrap();
    let mut m = Manifest::read(dir).unwrap();
    m.format_version = 1;
    m.checksums.clear();
    m.invariants = None;
    m.write_atomic(&v1).unwrap();
    v1
}

/// A read whose time range starts or ends inside a row group finds the rows in range from
/// `ts_ns` and decodes its other columns for those rows only: the same events as filtering a
/// whole read, whatever the bounds, columns, source filter, format and threads; and a page
/// wholly outside the range is never decoded (shown by damaging one in a file without
/// checksums: the bounded read does not see it, a whole read does).
#[test]
fn a_read_bounded_inside_row_groups_decodes_only_its_rows() {
    let d = tempfile::tempdir().unwrap();
    let c = several_groups();
    let s = gen::write_trace(d.path(), &c).unwrap();
    assert!(s.row_groups >= 4, "{} row groups", s.row_groups);
    let v1 = v1_copy(d.path());
    let all = read_all(&Trace::open(d.path()).unwrap(), &ReadOptions::default());
    let (first, last) = (all[0].ts_ns, all[all.len() - 1].ts_ns);
    let mut rng = gen::Rng(7);
    let mut at = |_| first + (rng.next() % (last - first + 2) as u64) as i64 - 1;
    // bounds at rows, between rows, at the ends and past them; one-sided ones
    let mut ranges: Vec<(Option<i64>, Option<i64>)> = (0..3)
        .map(|i| {
            let (a, b) = (at(i), at(i));
            (Some(a.min(b)), Some(a.max(b)))
        })
        .collect();
    let row = |i: usize| all[i * (all.len() - 1) / 7].ts_ns;
    ranges.extend([
        (Some(row(2)), Some(row(2) + 1)),
        (Some(row(3)), Some(row(3))),
        (Some(row(1)), None),
        (None, Some(row(5))),
        (Some(first), Some(last + 1)),
        (Some(last), Some(last + 1)),
    ]);
    let message_only = Columns {
        message: true,
        ..Columns::NONE
    };
    for dir in [d.path(), v1.as_path()] {
        let t = Trace::open(dir).unwrap();
        for &(since, until) in &ranges {
            let logs = Some(vec!["log".to_string(), "fault".to_string()]);
            for (columns, sources) in [
                (Columns::ALL, None),
                (Columns::ALL, logs),
                (message_only, None),
            ] {
                let want: Vec<Event> = all
                    .iter()
                    .filter(|e| {
                        since.is_none_or(|s| e.ts_ns >= s)
                            && until.is_none_or(|u| e.ts_ns < u)
                            && sources.as_ref().is_none_or(|v| v.contains(&e.source))
                    })
                    .map(|e| read_back(e, columns))
                    .collect();
                for read_ahead in [0, 2] {
                    let o = ReadOptions {
                        columns,
                        sources: sources.clone(),
                        since_ns: since,
                        until_ns: until,
                        read_ahead,
                        ..Default::default()
                    };
                    assert_eq!(
                        read_all(&t, &o),
                        want,
                        "{} {since:?}..{until:?} {columns:?} {sources:?} ahead {read_ahead}",
                        dir.display()
                    );
                }
            }
        }
    }

    // damage the payload of the first data page of `message` in the first row group of the v1
    // file, and read from a row of that group's last page
    let file = v1.join(files::EVENTS_PARQUET);
    let meta = parquet::arrow::arrow_reader::ArrowReaderMetadata::load(
        &std::fs::File::open(&file).unwrap(),
        parquet::arrow::arrow_reader::ArrowReaderOptions::new()
            .with_page_index_policy(parquet::file::metadata::PageIndexPolicy::Required),
    )
    .unwrap();
    let descr = meta.metadata().file_metadata().schema_descr();
    let col = (0..descr.num_columns())
        .find(|&i| descr.column(i).name() == "message")
        .unwrap();
    let index = meta.metadata().page_index().unwrap();
    let pages = index.offset_index(0, col).unwrap().page_locations();
    assert!(pages.len() >= 3, "{} pages", pages.len());
    let (start, end) = (
        pages[0].offset as usize + 64,
        (pages[0].offset + pages[0].compressed_page_size as i64) as usize,
    );
    assert!(end > start + 64);
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[start..end].fill(0xAA);
    std::fs::write(&file, bytes).unwrap();
    let t = Trace::open(&v1).unwrap();
    let whole = t
        .events(&ReadOptions::default())
        .unwrap()
        .collect::<Result<Vec<_>, _>>();
    assert!(whole.is_err(), "a whole read decoded the damaged page");
    let since = all[pages[pages.len() - 1].first_row_index as usize + 10].ts_ns;
    for read_ahead in [0, 2] {
        let o = ReadOptions {
            since_ns: Some(since),
            read_ahead,
            ..Default::default()
        };
        let want: Vec<Event> = all.iter().filter(|e| e.ts_ns >= since).cloned().collect();
        assert_eq!(read_all(&t, &o), want);
    }
}

/// An event as a read of `columns` shows it (`ts_ns` and `seq` always).
fn read_back(e: &Event, columns: Columns) -> Event {
    Event {
        ts_ns: e.ts_ns,
        seq: e.seq,
        source: if columns.source {
            e.source.clone()
        } else {
            String::new()
        },
        service: e.service.clone().filter(|_| columns.service),
        container: e.container.clone().filter(|_| columns.container),
        kind: if columns.kind {
            e.kind.clone()
        } else {
            String::new()
        },
        message: e.message.clone().filter(|_| columns.message),
        data: e.data.clone().filter(|_| columns.data),
    }
}

#[test]
fn reading_ahead_on_threads_gives_the_sequential_stream() {
    let d = tempfile::tempdir().unwrap();
    let c = GenConfig {
        duration: Duration::from_secs(260),
        log_rate: 400.0,
        ..cfg()
    };
    let s = gen::write_trace(d.path(), &c).unwrap();
    assert!(
        s.row_groups >= 6,
        "want many row groups, got {}",
        s.row_groups
    );
    // the same trace as format v1 (no checksums): row groups read without verification
    let v1 = v1_copy(d.path());
    let windows = [
        ReadOptions::default(),
        ReadOptions {
            columns: Columns::NONE,
            batch_size: 1000,
            ..Default::default()
        },
        ReadOptions {
            since_ns: Some(c.start_ns + 60_000_000_000),
            until_ns: Some(c.start_ns + 200_000_000_000),
            sources: Some(vec!["jmx".into(), "log".into()]),
            ..Default::default()
        },
    ];
    for dir in [d.path(), v1.as_path()] {
        let t = Trace::open(dir).unwrap();
        for o in &windows {
            let want = batches(&t, o);
            assert!(want.len() > 8, "{} batches", want.len());
            for threads in [2, 5] {
                let ahead = ReadOptions {
                    read_ahead: threads,
                    ..o.clone()
                };
                let got = batches(&t, &ahead);
                // a v1 file is read sequentially by one reader whose batches run across row
                // groups; read ahead, each row group ends its last batch: compare the events
                let same = if dir == d.path() {
                    got == want
                } else {
                    got.concat() == want.concat()
                };
                assert!(
                    same,
                    "{threads} threads differ from the sequential read of {}",
                    dir.display()
                );
            }
        }
    }
    // a consumer that stops early ends the workers
    let t = Trace::open(d.path()).unwrap();
    let ahead = ReadOptions {
        read_ahead: 2,
        ..Default::default()
    };
    let first = t.events(&ahead).unwrap().next().unwrap().unwrap().len();
    assert!(first > 0);
}

#[test]
fn reading_ahead_reports_a_damaged_row_group_in_order() {
    let d = tempfile::tempdir().unwrap();
    let c = several_groups();
    gen::write_trace(d.path(), &c).unwrap();
    let seq = read_all(&Trace::open(d.path()).unwrap(), &ReadOptions::default());
    // damage a byte in the middle of the file: a later row group fails its checksum
    let pq = d.path().join(files::EVENTS_PARQUET);
    let mut bytes = std::fs::read(&pq).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&pq, &bytes).unwrap();
    let t = Trace::open(d.path()).unwrap();
    for threads in [0, 2] {
        let o = ReadOptions {
            read_ahead: threads,
            ..Default::default()
        };
        let mut got = Vec::new();
        let mut err = None;
        for b in t.events(&o).unwrap() {
            match b {
                Ok(b) => got.extend(b.iter().map(|e| e.to_owned())),
                Err(e) => {
                    err = Some(e.to_string());
                    break;
                }
            }
        }
        let err = err.expect("the damage is found");
        assert!(err.contains("checksum mismatch"), "{err}");
        assert!(!got.is_empty() && got.len() < seq.len());
        assert_eq!(got[..], seq[..got.len()], "{threads} threads");
    }
}

/// Leaves `events` (with their seqs) in an unfinalized trace's log, in arrival order, in
/// batches of 500 as a recorder flushes them.
fn write_log(dir: &Path, events: &[Event]) {
    Manifest {
        format_version: 2,
        run_id: "t".into(),
        ..Default::default()
    }
    .write_atomic(dir)
    .unwrap();
    let mut w = crate::framed::FramedWriter::create(&dir.join(files::EVENTS_LOG)).unwrap();
    for b in events.chunks(500) {
        w.write(&crate::schema::events_to_log_batch(b.iter()))
            .unwrap();
    }
}

#[test]
fn finalize_merges_a_nearly_sorted_log_and_places_late_events() {
    let c = GenConfig {
        duration: Duration::from_secs(120),
        log_rate: 300.0,
        disorder: Duration::from_millis(200),
        ..cfg()
    };
    let mut events: Vec<Event> = gen::events(&c).collect();
    // a few events arrive very late (a log read again at teardown): the last 20 of each
    // thousand moved to the end
    let mut late = Vec::new();
    let mut i = 0;
    events.retain(|e| {
        i += 1;
        if i % 1000 >= 980 {
            late.push(e.clone());
            false
        } else {
            true
        }
    });
    events.extend(late);
    for (i, e) in events.iter_mut().enumerate() {
        e.seq = i as u64 + 1;
    }
    let want = sorted(events.clone());
    // budgets: everything held, a few MB held (late events placed by the second pass), tiny
    for budget in [usize::MAX / 2, 4 << 20, 64 << 10] {
        let d = tempfile::tempdir().unwrap();
        write_log(d.path(), &events);
        let s = crate::finalize::finalize_budget(d.path(), Default::default(), budget).unwrap();
        assert_eq!(s.events, events.len() as u64);
        assert!(s.row_groups >= 2, "{s:?}");
        let t = Trace::open(d.path()).unwrap();
        let inv = t.manifest().invariants.clone().unwrap();
        assert!(inv.sorted && inv.unique_seq && inv.events == events.len() as u64);
        assert_eq!(inv.max_seq, events.len() as u64);
        assert_eq!(s.first_ns, Some(want[0].ts_ns));
        assert_eq!(s.last_ns, Some(want[want.len() - 1].ts_ns));
        assert!(
            read_all(&t, &ReadOptions::default()) == want,
            "budget {budget}: finalized events differ from the sorted log"
        );
        assert!(!d.path().join(files::EVENTS_LOG).exists());
        let left: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(left.is_empty(), "left behind: {left:?}");
    }
}

#[test]
fn finalize_still_refuses_shared_seqs_across_late_rows_and_parts() {
    let c = GenConfig {
        duration: Duration::from_secs(60),
        log_rate: 200.0,
        ..cfg()
    };
    let mut events: Vec<Event> = gen::events(&c).collect();
    for (i, e) in events.iter_mut().enumerate() {
        e.seq = i as u64 + 1;
    }
    // the first event again at the very end, with its seq and another time
    let mut again = events[0].clone();
    again.ts_ns -= 1;
    events.push(again);
    for budget in [usize::MAX / 2, 64 << 10] {
        let d = tempfile::tempdir().unwrap();
        write_log(d.path(), &events);
        let e = crate::finalize::finalize_budget(d.path(), Default::default(), budget)
            .unwrap_err()
            .to_string();
        assert!(e.contains("seq 1 is shared"), "{e}");
        assert!(d.path().join(files::EVENTS_LOG).exists());
        assert!(!d.path().join(files::EVENTS_PARQUET).exists());
    }
}

#[test]
fn prepare_runs_on_each_batch_where_it_is_decoded_and_rides_with_it() {
    use std::sync::Arc;
    let d = tempfile::tempdir().unwrap();
    let c = GenConfig {
        duration: Duration::from_secs(260),
        log_rate: 400.0,
        packet_rate: 20.0,
        ..cfg()
    };
    let s = gen::write_trace(d.path(), &c).unwrap();
    assert!(s.row_groups >= 6, "{} row groups", s.row_groups);
    let t = Trace::open(d.path()).unwrap();
    // what it made of a batch: its length, first and last seq, and the thread it ran on
    type Made = (usize, u64, u64, std::thread::ThreadId);
    let prepare = crate::Prepare::new(|b| {
        let first = b.iter().next()?.seq;
        let last = b.iter().last()?.seq;
        let made: Made = (b.len(), first, last, std::thread::current().id());
        Some(Arc::new(made))
    });
    let me = std::thread::current().id();
    for read_ahead in [0, 3] {
        let o = ReadOptions {
            read_ahead,
            prepare: Some(prepare.clone()),
            ..Default::default()
        };
        let mut elsewhere = 0;
        let mut n = 0;
        for b in t.events(&o).unwrap() {
            let b = b.unwrap();
            let made = b
                .prepared()
                .and_then(|p| p.downcast_ref::<Made>())
                .expect("prepared");
            let seqs = (b.iter().next().unwrap().seq, b.iter().last().unwrap().seq);
            assert_eq!((made.0, made.1, made.2), (b.len(), seqs.0, seqs.1));
            elsewhere += usize::from(made.3 != me);
            n += 1;
            // a slow consumer: the workers decode (and prepare) ahead of it
            if read_ahead > 0 {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        assert!(n >= 6, "{n} batches");
        if read_ahead == 0 {
            assert_eq!(elsewhere, 0);
        } else {
            assert!(elsewhere > 0, "no batch was prepared on a worker");
        }
    }
    // batches that merge packets are new batches: nothing made rides with them
    let o = ReadOptions {
        include_packets: true,
        read_ahead: 2,
        prepare: Some(prepare.clone()),
        ..Default::default()
    };
    assert!(t
        .events(&o)
        .unwrap()
        .all(|b| b.unwrap().prepared().is_none()));
}
