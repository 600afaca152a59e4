//! Modules and devices named on the command line by id or by name: a name
//! is looked up in the caller's list; an ambiguous one is refused with the
//! ids to choose from.

use crate::dto::{Device, Module};

use super::client::{Client, Failure, Res};

/// A module by id, name, or `name@version` (one version among several).
pub(super) fn module(c: &Client, arg: &str) -> Res<i64> {
    if let Some(id) = numeric(arg) {
        return Ok(id);
    }
    let (name, version) = match arg.rsplit_once('@') {
        Some((n, v)) if !n.is_empty() => (n, Some(v)),
        _ => (arg, None),
    };
    let all: Vec<Module> = c.get("/api/v1/modules")?.data;
    let hits = all
        .iter()
        .filter(|m| m.name == name && version.is_none_or(|v| m.version == v))
        .map(|m| (m.id, m.owner.as_deref().unwrap_or("built-in")));
    one("module", arg, hits, "give the id or name@version")
}

/// A device by id or name.
pub(super) fn device(c: &Client, arg: &str) -> Res<i64> {
    if let Some(id) = numeric(arg) {
        return Ok(id);
    }
    let all: Vec<Device> = c.get("/api/v1/devices")?.data;
    let hits = all
        .iter()
        .filter(|d| d.name == arg)
        .map(|d| (d.id, d.tenant.as_str()));
    one("device", arg, hits, "give the id")
}

/// An id written as one.
fn numeric(arg: &str) -> Option<i64> {
    (!arg.is_empty() && arg.bytes().all(|b| b.is_ascii_digit()))
        .then(|| arg.parse().ok())
        .flatten()
}

/// The one `(id, owner)` of `hits`, or why not.
fn one<'a>(
    kind: &str,
    arg: &str,
    hits: impl Iterator<Item = (i64, &'a str)>,
    how: &str,
) -> Res<i64> {
    let hits: Vec<(i64, &str)> = hits.collect();
    match hits.as_slice() {
        [(id, _)] => Ok(*id),
        [] => Err(Failure::Other(format!(
            "not_found: no {kind} with id or name {arg:?}"
        ))),
        many => {
            let ids: Vec<String> = many
                .iter()
                .map(|(id, owner)| format!("{id} ({owner})"))
                .collect();
            Err(Failure::Other(format!(
                "{} {kind}s are named {arg:?} (ids {}): {how}",
                many.len(),
                ids.join(", ")
            )))
        }
    }
}
