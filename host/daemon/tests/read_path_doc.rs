//! `docs/read-path.md` walks one READ through the code: every file and
//! function its table names must exist, and the walk must stay within
//! eight files (issue: a newcomer follows a READ in at most eight files).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The backticked items of a table cell.
fn ticked(cell: &str) -> Vec<&str> {
    cell.split('`').skip(1).step_by(2).collect()
}

/// Whether `source` defines function `name` (`fn name(` or `fn name<`).
fn defines_fn(source: &str, name: &str) -> bool {
    [format!("fn {name}("), format!("fn {name}<")]
        .iter()
        .any(|pat| source.contains(pat.as_str()))
}

#[test]
fn every_file_and_function_of_the_read_walk_exists() {
    let doc = std::fs::read_to_string(repo().join("docs/read-path.md")).unwrap();
    let rows: Vec<&str> = doc
        .lines()
        .skip_while(|l| !l.starts_with("| step"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .collect();
    assert!(rows.len() >= 8, "the table has {} steps", rows.len());
    let mut files = BTreeSet::new();
    for row in rows {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let (paths, fns) = (ticked(cells[2]), ticked(cells[3]));
        assert!(
            !paths.is_empty() && !fns.is_empty(),
            "row without names: {row}"
        );
        let sources: Vec<String> = paths
            .iter()
            .map(|p| {
                files.insert(p.to_string());
                std::fs::read_to_string(repo().join(p))
                    .unwrap_or_else(|e| panic!("{p} (named in docs/read-path.md): {e}"))
            })
            .collect();
        for f in fns {
            let (ty, name) = match f.rsplit_once("::") {
                Some((ty, name)) => (Some(ty), name),
                None => (None, f),
            };
            let found = sources.iter().any(|s| {
                defines_fn(s, name)
                    && ty.is_none_or(|t| {
                        s.contains(&format!("struct {t}"))
                            || s.contains(&format!("for {t}"))
                            || s.contains(&format!("impl {t}"))
                            || s.contains(&format!("impl<B> {t}"))
                    })
            });
            assert!(
                found,
                "`{f}` is not defined in {paths:?} (docs/read-path.md)"
            );
        }
    }
    assert!(
        files.len() <= 8,
        "the READ walk spans {} files: {files:?}",
        files.len()
    );
}
