//! The contract says when each of its items came: every interface,
//! function, type and world item of `wit/backstore.wit` carries
//! `@since(version = …)` no later than the package's version, and what its
//! docs call "Added in 0.1.x" is gated on that version.

use std::path::Path;

use wit_parser::{Resolve, Stability, WorldItem};

fn since(
    what: &str,
    s: &Stability,
    docs: Option<&str>,
    package: &semver::Version,
    found: &mut Vec<String>,
) {
    match s {
        Stability::Stable { since, .. } => {
            if since > package {
                found.push(format!(
                    "{what}: @since {since} is newer than the package ({package})"
                ));
            }
            if let Some(d) = docs
                && let Some(i) = d.find("Added in ")
            {
                let said = d[i + 9..]
                    .split(|c: char| !(c.is_ascii_digit() || c == '.'))
                    .next();
                let said = said.map(|v| v.trim_end_matches('.'));
                if said != Some(since.to_string().as_str()) {
                    found.push(format!(
                        "{what}: docs say \"Added in {said:?}\", @since is {since}"
                    ));
                }
            }
        }
        other => found.push(format!("{what}: no @since ({other:?})")),
    }
}

#[test]
fn every_item_of_the_contract_says_since_when() {
    let wit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../wit");
    let mut resolve = Resolve::default();
    let (pkg, _) = resolve.push_dir(&wit).expect("wit/ parses");
    let package = resolve.packages[pkg]
        .name
        .version
        .clone()
        .expect("a versioned package");
    let mut found = Vec::new();
    let mut items = 0;
    for (_, iface) in resolve
        .interfaces
        .iter()
        .filter(|(_, i)| i.package == Some(pkg))
    {
        let name = iface.name.clone().unwrap_or_default();
        since(
            &format!("interface {name}"),
            &iface.stability,
            iface.docs.contents.as_deref(),
            &package,
            &mut found,
        );
        for (fname, f) in &iface.functions {
            items += 1;
            since(
                &format!("{name}.{fname}"),
                &f.stability,
                f.docs.contents.as_deref(),
                &package,
                &mut found,
            );
        }
        for (tname, ty) in &iface.types {
            items += 1;
            let t = &resolve.types[*ty];
            since(
                &format!("{name}.{tname}"),
                &t.stability,
                t.docs.contents.as_deref(),
                &package,
                &mut found,
            );
        }
    }
    for (_, world) in resolve
        .worlds
        .iter()
        .filter(|(_, w)| w.package == Some(pkg))
    {
        since(
            &format!("world {}", world.name),
            &world.stability,
            None,
            &package,
            &mut found,
        );
        for (key, item) in world.imports.iter().chain(&world.exports) {
            if let WorldItem::Interface { stability, .. } = item {
                items += 1;
                since(
                    &format!("world {} {}", world.name, resolve.name_world_key(key)),
                    stability,
                    None,
                    &package,
                    &mut found,
                );
            }
        }
    }
    assert!(items > 40, "only {items} items read: is this the contract?");
    assert!(found.is_empty(), "{}", found.join("\n"));
}
