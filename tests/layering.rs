//! The layering written down in src/lib.rs is the code's: every `crate::` reference outside
//! tests goes to the module's own layer or a lower one, and no two modules import each other.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Layer of every module, from lib.rs's `//! N. kind: [`a`], [`b`]` lines.
fn layers() -> BTreeMap<String, usize> {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    let mut out = BTreeMap::new();
    for line in lib.lines() {
        let Some(rest) = line.strip_prefix("//! ") else {
            continue;
        };
        let Some((n, list)) = rest.split_once(". ") else {
            continue;
        };
        let Ok(n) = n.parse::<usize>() else {
            continue;
        };
        for part in list.split("[`").skip(1) {
            let name = part.split('`').next().unwrap();
            out.insert(name.to_string(), n);
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The code of a file without comments and without its `#[cfg(test)]` module.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let text = text.split("#[cfg(test)]").next().unwrap();
    text.lines()
        .map(|l| l.split("//").next().unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Top-level modules each module's code refers to through `crate::`.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(src()).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        if first == "bin" || first == "lib.rs" {
            continue;
        }
        let module = first.trim_end_matches(".rs").to_string();
        let code = code(&f);
        let deps = out.entry(module.clone()).or_default();
        for (i, _) in code.match_indices("crate::") {
            let name: String = code[i + 7..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if name != module {
                deps.insert(name);
            }
        }
    }
    out
}

#[test]
fn modules_import_only_their_layer_or_below_and_no_cycle() {
    let layers = layers();
    assert!(layers.len() >= 20, "lib.rs lists the layers: {layers:?}");
    let imports = imports();
    for module in imports.keys() {
        assert!(
            layers.contains_key(module),
            "{module} is not in lib.rs's layer list"
        );
    }
    let mut wrong = Vec::new();
    for (module, deps) in &imports {
        for d in deps {
            let (from, to) = (layers[module], layers.get(d).copied().unwrap_or(0));
            if to > from {
                wrong.push(format!("{module} (layer {from}) imports {d} (layer {to})"));
            }
            if imports.get(d).is_some_and(|back| back.contains(module)) {
                wrong.push(format!("{module} and {d} import each other"));
            }
        }
    }
    assert!(wrong.is_empty(), "layering broken:\n{}", wrong.join("\n"));
}
