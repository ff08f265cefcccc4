//! The README's "Layout" claims, checked against the tree: `lib.rs` exports eight modules,
//! no file in `src/` is over 900 lines, and every module uses only the modules the README
//! lists below it (the dependency direction is one way).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("reading src/") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules in the README's Layout order, highest first.
fn readme_order() -> Vec<String> {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let layout = readme
        .split("## Layout")
        .nth(1)
        .expect("the README has a Layout section");
    layout
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("src/"))
        .filter_map(|rest| {
            let name = rest.split(|c: char| c == '/' || c.is_whitespace()).next()?;
            let name = name.strip_suffix(".rs").unwrap_or(name);
            (name != "bin").then(|| name.to_string())
        })
        .collect()
}

/// The crate modules a top-level module's files name (`crate::x`, `crate::{x, y}`).
fn uses_of(module: &str) -> Vec<String> {
    let dir = root().join("src").join(module);
    let mut files = Vec::new();
    if dir.is_dir() {
        rust_files(&dir, &mut files);
    } else {
        files.push(root().join("src").join(format!("{module}.rs")));
    }
    let mut used = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).expect("a source file");
        for (i, _) in text.match_indices("crate::") {
            let rest = &text[i + "crate::".len()..];
            let names: Vec<&str> = if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                group[..end].split(',').map(str::trim).collect()
            } else {
                vec![rest]
            };
            for n in names {
                let ident: String = n
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !ident.is_empty() && ident != module && !used.contains(&ident) {
                    used.push(ident);
                }
            }
        }
    }
    used
}

#[test]
fn lib_exports_eight_modules() {
    let lib = std::fs::read_to_string(root().join("src/lib.rs")).expect("src/lib.rs");
    let public: Vec<&str> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod "))
        .collect();
    assert_eq!(public.len(), 8, "lib.rs exports {public:?}");
}

#[test]
fn no_source_file_is_over_900_lines() {
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    assert!(files.len() > 50, "found only {} files", files.len());
    let long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let n = std::fs::read_to_string(f)
                .expect("a source file")
                .lines()
                .count();
            (n > 900).then(|| format!("{}: {n} lines", f.display()))
        })
        .collect();
    assert!(long.is_empty(), "{long:?}");
}

#[test]
fn every_module_uses_only_the_modules_below_it_in_the_readme() {
    let order = readme_order();
    assert!(order.len() >= 12, "the Layout section lists {order:?}");
    let lib = std::fs::read_to_string(root().join("src/lib.rs")).expect("src/lib.rs");
    let declared: Vec<&str> = lib
        .lines()
        .filter_map(|l| {
            l.strip_prefix("pub mod ")
                .or_else(|| l.strip_prefix("mod "))
        })
        .map(|m| m.trim_end_matches(';'))
        .collect();
    for m in &declared {
        assert!(
            order.iter().any(|o| o == m),
            "{m} is not in the README's Layout"
        );
    }
    let rank: BTreeMap<&str, usize> = order
        .iter()
        .enumerate()
        .map(|(i, m)| (m.as_str(), i))
        .collect();
    let mut wrong = Vec::new();
    for (i, m) in order.iter().enumerate() {
        for used in uses_of(m) {
            match rank.get(used.as_str()) {
                Some(&j) if j > i => {}
                Some(_) => wrong.push(format!("{m} uses {used}, which the README lists above it")),
                // `crate::Result` and the like: items of lib.rs, not modules.
                None => assert!(
                    !declared.contains(&used.as_str()),
                    "{m} uses {used}, missing from the README"
                ),
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
