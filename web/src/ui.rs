//! The web UI's static assets, built into the binary (the UI works offline:
//! no CDN, no external fonts or scripts).

const HTML: &str = "text/html; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const SVG: &str = "image/svg+xml";

/// Every asset: path relative to the UI root, content type, bytes.
const ASSETS: &[(&str, &str, &[u8])] = &[
    ("index.html", HTML, include_bytes!("../ui/index.html")),
    ("app.css", CSS, include_bytes!("../ui/app.css")),
    ("app.js", JS, include_bytes!("../ui/app.js")),
    ("api.js", JS, include_bytes!("../ui/api.js")),
    ("dom.js", JS, include_bytes!("../ui/dom.js")),
    ("chart.js", JS, include_bytes!("../ui/chart.js")),
    (
        "pages/common.js",
        JS,
        include_bytes!("../ui/pages/common.js"),
    ),
    (
        "pages/modules.js",
        JS,
        include_bytes!("../ui/pages/modules.js"),
    ),
    (
        "pages/devices.js",
        JS,
        include_bytes!("../ui/pages/devices.js"),
    ),
    (
        "pages/device.js",
        JS,
        include_bytes!("../ui/pages/device.js"),
    ),
    ("pages/admin.js", JS, include_bytes!("../ui/pages/admin.js")),
    ("favicon.svg", SVG, include_bytes!("../ui/favicon.svg")),
];

/// The asset at `path` (relative to the UI root, e.g. `index.html`,
/// `app.js`, `pages/device.js`; a leading `/` is ignored), with its content
/// type. The UI routes with the URL fragment, so only `""` and `index.html`
/// serve the page itself.
pub fn asset(path: &str) -> Option<(&'static str, &'static [u8])> {
    let path = path.strip_prefix('/').unwrap_or(path);
    let path = if path.is_empty() { "index.html" } else { path };
    ASSETS
        .iter()
        .find(|(p, _, _)| *p == path)
        .map(|(_, ct, bytes)| (*ct, *bytes))
}

/// Paths of every embedded asset (for tests and the router).
pub fn paths() -> impl Iterator<Item = &'static str> {
    ASSETS.iter().map(|(p, _, _)| *p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_and_every_asset_resolve() {
        assert_eq!(asset("").unwrap().0, HTML);
        assert_eq!(asset("/").unwrap().0, HTML);
        assert_eq!(asset("index.html").unwrap().0, HTML);
        assert_eq!(asset("app.js").unwrap().0, JS);
        assert_eq!(asset("/app.css").unwrap().0, CSS);
        assert!(asset("nope.js").is_none());
        assert!(asset("../Cargo.toml").is_none());
        for p in paths() {
            let (_, bytes) = asset(p).unwrap();
            assert!(!bytes.is_empty(), "{p} is empty");
        }
    }

    /// The UI works under `crate::CONTENT_SECURITY_POLICY` (no
    /// `'unsafe-inline'`, no `'unsafe-eval'`, this origin only): the page
    /// has no inline script, style or event handler, and the scripts build
    /// no code from strings, set no `style` attribute (CSSOM properties are
    /// fine) and load nothing from elsewhere.
    #[test]
    fn nothing_the_ui_needs_is_inline() {
        let (_, page) = asset("index.html").unwrap();
        let page = std::str::from_utf8(page).unwrap().to_ascii_lowercase();
        for tag in page.split('<').skip(1) {
            let tag = tag.split('>').next().unwrap();
            if tag.starts_with("script") {
                assert!(tag.contains(" src="), "inline script: <{tag}>");
            }
            assert!(!tag.starts_with("style"), "inline style element");
            for attr in tag.split_whitespace().skip(1) {
                assert!(!attr.starts_with("style="), "style attribute: <{tag}>");
                assert!(
                    !(attr.starts_with("on") && attr.contains('=')),
                    "inline event handler: <{tag}>"
                );
                for url in ["src=", "href="] {
                    if let Some(v) = attr.strip_prefix(url) {
                        let v = v.trim_matches('"');
                        assert!(
                            v.starts_with('/') || v.starts_with('#'),
                            "{v} is not on this origin"
                        );
                    }
                }
            }
        }
        for p in paths().filter(|p| p.ends_with(".js")) {
            let text = std::str::from_utf8(asset(p).unwrap().1).unwrap();
            for bad in [
                "eval(",
                "new Function",
                "setAttribute('style'",
                "setAttribute(\"style\"",
                "style: ",
                "javascript:",
                "http://",
                "https://",
                "<style",
                "<script",
                "style=",
                " onclick=",
                "import(",
            ] {
                // The SVG namespace is a name, not a URL that is loaded.
                let text = text.replace("http://www.w3.org/2000/svg", "");
                assert!(!text.contains(bad), "{p} uses {bad:?}");
            }
        }
        let css = std::str::from_utf8(asset("app.css").unwrap().1).unwrap();
        assert!(
            !css.contains("@import") && !css.contains("url("),
            "app.css loads nothing"
        );
    }

    /// Every relative module import in the JS files names an embedded asset,
    /// so adding a file to ui/ without listing it here fails this test.
    #[test]
    fn js_imports_are_embedded() {
        for p in paths().filter(|p| p.ends_with(".js")) {
            let (_, bytes) = asset(p).unwrap();
            let text = std::str::from_utf8(bytes).unwrap();
            let dir = p.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
            for line in text.lines() {
                let Some(rest) = line.split(" from '").nth(1) else {
                    continue;
                };
                let Some(spec) = rest.split('\'').next() else {
                    continue;
                };
                let mut parts: Vec<&str> = dir.split('/').filter(|s| !s.is_empty()).collect();
                for seg in spec.split('/') {
                    match seg {
                        "." => {}
                        ".." => {
                            parts.pop();
                        }
                        s => parts.push(s),
                    }
                }
                let resolved = parts.join("/");
                assert!(
                    asset(&resolved).is_some(),
                    "{p} imports {spec} ({resolved}), which is not embedded"
                );
            }
        }
    }
}
