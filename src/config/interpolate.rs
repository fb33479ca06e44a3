//! OmegaConf-style interpolation over a composed tree: `${a.b.c}` (an absolute key path; a string
//! that is exactly one interpolation takes the referenced value, of any type; otherwise the value
//! is spliced in as text) and `${oc.env:VAR,default}` (an environment variable, or the default,
//! itself possibly an interpolation). Other resolvers (AlpaSim's wizard registers `repo-relative`,
//! `repo-version`, `or`, `cmd-line-args`) are kept as text, with one warning naming them; so are
//! references to keys that do not exist (with a warning). A reference cycle is an error.

use std::collections::{BTreeSet, HashMap};

use serde_norway::Value;

use super::tree::{get, join, key_text};

/// What interpolation could not do.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InterpolationError {
    /// `${a}` refers (through other keys) back to itself.
    #[error("interpolation cycle: {}", .0.join(" → "))]
    Cycle(Vec<String>),
    /// A `${` without its `}`.
    #[error("{path}: unterminated interpolation in {text:?}")]
    Unterminated {
        /// the key
        path: String,
        /// its text
        text: String,
    },
}

/// Resolves every interpolation of `root`; `env` looks up environment variables. Returns the
/// resolved tree and the warnings (resolvers kept as text, missing references).
pub fn resolve(
    root: &Value,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Value, Vec<String>), InterpolationError> {
    let mut r = Resolver {
        raw: root,
        env,
        cache: HashMap::new(),
        stack: Vec::new(),
        kept_resolvers: BTreeSet::new(),
        missing: BTreeSet::new(),
    };
    let out = r.deep(root, "")?;
    let mut warnings = Vec::new();
    if !r.kept_resolvers.is_empty() {
        warnings.push(format!(
            "resolvers drivekit does not implement are kept as text: {} (only where drivekit does not read the value)",
            r.kept_resolvers.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    if !r.missing.is_empty() {
        warnings.push(format!(
            "interpolations of keys that do not exist are kept as text: {}",
            r.missing.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    Ok((out, warnings))
}

struct Resolver<'a> {
    raw: &'a Value,
    env: &'a dyn Fn(&str) -> Option<String>,
    cache: HashMap<String, Value>,
    stack: Vec<String>,
    kept_resolvers: BTreeSet<String>,
    missing: BTreeSet<String>,
}

/// A part of a string: literal text, or an interpolation's inner text.
enum Part<'s> {
    Text(&'s str),
    Interp(&'s str),
}

fn split_parts<'s>(s: &'s str, path: &str) -> Result<Vec<Part<'s>>, InterpolationError> {
    let mut parts = Vec::new();
    let mut i = 0;
    let b = s.as_bytes();
    let mut text_start = 0;
    while i + 1 < b.len() {
        if b[i] == b'\\' && b[i + 1] == b'$' {
            // An escaped `\${`: literal.
            i += 2;
            continue;
        }
        if b[i] == b'$' && b[i + 1] == b'{' {
            let mut depth = 0;
            let mut j = i;
            let mut end = None;
            while j < b.len() {
                if j + 1 < b.len() && b[j] == b'$' && b[j + 1] == b'{' {
                    depth += 1;
                    j += 2;
                    continue;
                }
                if b[j] == b'}' {
                    depth -= 1;
                    if depth == 0 {
                        end = Some(j);
                        break;
                    }
                }
                j += 1;
            }
            let Some(end) = end else {
                return Err(InterpolationError::Unterminated {
                    path: path.to_string(),
                    text: s.to_string(),
                });
            };
            if text_start < i {
                parts.push(Part::Text(&s[text_start..i]));
            }
            parts.push(Part::Interp(&s[i + 2..end]));
            i = end + 1;
            text_start = i;
            continue;
        }
        i += 1;
    }
    if text_start < s.len() {
        parts.push(Part::Text(&s[text_start..]));
    }
    Ok(parts)
}

/// The text a value is spliced in as.
fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "None".into(),
        other => serde_norway::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
}

/// Splits `a,b` at the commas outside nested interpolations.
fn split_args(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if i + 1 < b.len() && b[i] == b'$' && b[i + 1] == b'{' {
            depth += 1;
            i += 2;
            continue;
        }
        match b[i] {
            b'}' => depth -= 1,
            b',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    out.push(&s[start..]);
    out
}

impl Resolver<'_> {
    /// `v` (at `path`) with every interpolation inside it resolved.
    fn deep(&mut self, v: &Value, path: &str) -> Result<Value, InterpolationError> {
        Ok(match v {
            Value::String(s) => self.string(s, path)?,
            Value::Mapping(m) => {
                let mut out = serde_norway::Mapping::new();
                for (k, v) in m {
                    out.insert(k.clone(), self.deep(v, &join(path, &key_text(k)))?);
                }
                Value::Mapping(out)
            }
            Value::Sequence(s) => Value::Sequence(
                s.iter()
                    .enumerate()
                    .map(|(i, v)| self.deep(v, &join(path, &i.to_string())))
                    .collect::<Result<_, _>>()?,
            ),
            other => other.clone(),
        })
    }

    /// A string with its interpolations resolved.
    fn string(&mut self, s: &str, path: &str) -> Result<Value, InterpolationError> {
        if !s.contains("${") {
            return Ok(Value::String(s.replace("\\${", "${")));
        }
        let parts = split_parts(s, path)?;
        if let [Part::Interp(inner)] = parts.as_slice() {
            return self.interp(inner, s, path);
        }
        let mut out = String::new();
        for p in parts {
            match p {
                Part::Text(t) => out.push_str(&t.replace("\\${", "${")),
                Part::Interp(inner) => out.push_str(&as_text(&self.interp(
                    inner,
                    &format!("${{{inner}}}"),
                    path,
                )?)),
            }
        }
        Ok(Value::String(out))
    }

    /// One interpolation's value (`whole` is its `${…}` text, kept when it cannot be resolved).
    fn interp(
        &mut self,
        inner: &str,
        whole: &str,
        path: &str,
    ) -> Result<Value, InterpolationError> {
        let head_len = inner
            .find(|c: char| !(c.is_ascii_alphanumeric() || "._-".contains(c)))
            .unwrap_or(inner.len());
        if inner[head_len..].starts_with(':') {
            let (name, args) = (&inner[..head_len], &inner[head_len + 1..]);
            if name != "oc.env" {
                self.kept_resolvers.insert(name.to_string());
                return Ok(Value::String(whole.to_string()));
            }
            let args = split_args(args);
            let var = as_text(&self.string(args[0].trim(), path)?);
            if let Some(v) = (self.env)(&var) {
                return Ok(Value::String(v));
            }
            return match args.get(1) {
                Some(default) => self.string(default.trim(), path),
                None => Ok(Value::Null),
            };
        }
        let key = inner.trim();
        self.key(key, whole)
    }

    /// The resolved value at key path `key` (or `whole` kept as text when there is none).
    fn key(&mut self, key: &str, whole: &str) -> Result<Value, InterpolationError> {
        if let Some(v) = self.cache.get(key) {
            return Ok(v.clone());
        }
        if self.stack.iter().any(|k| k == key) {
            let mut cycle = self.stack.clone();
            cycle.push(key.to_string());
            return Err(InterpolationError::Cycle(cycle));
        }
        let Some(raw) = get(self.raw, key) else {
            self.missing.insert(key.to_string());
            return Ok(Value::String(whole.to_string()));
        };
        self.stack.push(key.to_string());
        let v = self.deep(raw, key);
        self.stack.pop();
        let v = v?;
        self.cache.insert(key.to_string(), v.clone());
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(y: &str, env: &[(&str, &str)]) -> Result<(Value, Vec<String>), InterpolationError> {
        let v: Value = serde_norway::from_str(y).unwrap();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        resolve(&v, &move |k| {
            env.iter().find(|(a, _)| a == k).map(|(_, b)| b.clone())
        })
    }

    #[test]
    fn references_env_defaults_other_resolvers_and_cycles() {
        let (v, w) = run(
            "a: {b: 5, l: [1, 2]}\nc: ${a.b}\nd: x-${a.b}-y\ne: ${a}\nf: ${oc.env:HOME_X,${a.b}/cache}\ng: ${oc.env:SET}\nh: ${repo-version:}\ni: ${nope.key}\nj: \\${a.b}\n",
            &[("SET", "from-env")],
        )
        .unwrap();
        let want: Value = serde_norway::from_str(
            "a: {b: 5, l: [1, 2]}\nc: 5\nd: x-5-y\ne: {b: 5, l: [1, 2]}\nf: 5/cache\ng: from-env\nh: ${repo-version:}\ni: ${nope.key}\nj: ${a.b}\n",
        )
        .unwrap();
        assert_eq!(v, want);
        assert!(w[0].contains("repo-version"), "{w:?}");
        assert!(w[1].contains("nope.key"), "{w:?}");
        let e = run("a: ${b}\nb: ${c}\nc: ${a}\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("interpolation cycle") && e.contains("b → c → a → b"),
            "{e}"
        );
        let e = run("a: ${b\n", &[]).unwrap_err().to_string();
        assert!(e.contains("unterminated"), "{e}");
    }
}
