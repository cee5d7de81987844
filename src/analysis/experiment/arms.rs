//! The arms of an experiment: what `--variants` lists. An arm is an attention variant alone (`quiet`),
//! or a name with config overrides of its own (`sgd:optimizer=sgd+learning_rate=0.03`), for controls
//! that differ in something else than the attention.
//!
//! Syntax of one `--variants` entry (entries are separated by `,`):
//!   `VARIANT`                          an attention variant; the arm is named after it
//!   `NAME:key=value+key=value...`      an arm NAME with these overrides on top of the experiment's config
//! Overrides are separated by `+` (a `+` that starts the next `key=`; `1e+3` stays one value), or by
//! `;` where the list is quoted (a shell ends the command at a bare `;`). `+`, `:`, `=` and `,` need
//! no quoting in a shell or a Slurm script. NAME is letters, digits, `_` and `-` (it names the run
//! folders `runs/<NAME>-seed<S>` and the report's columns). The arm's attention is `attention=...` if
//! it sets it, else NAME when NAME is a variant, else softmax (the experiment presets'). `seed`,
//! `out_dir` and `data_dir` are the experiment's own and cannot be set per arm (runs are paired by
//! seed on the same data); an arm that sets `max_iters` alone moves `lr_decay_iters` with it, as the
//! experiment's own `--max_iters=` does.

use crate::config::{parse_override, AttentionKind, Config};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// One arm of an experiment (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Arm {
    pub name: String,
    pub attention: AttentionKind,
    /// `key=value` overrides on top of the experiment's config (attention aside), in the order given.
    pub overrides: Vec<String>,
}

/// Keys an arm cannot set, and what sets them.
const EXPERIMENT_KEYS: [(&str, &str); 3] =
    [("seed", "--seeds or --seed_list"), ("out_dir", "--out"), ("data_dir", "--data_dir or --input")];

impl Arm {
    /// The arm of an attention variant alone.
    pub fn variant(kind: AttentionKind) -> Arm {
        Arm { name: kind.to_string(), attention: kind, overrides: vec![] }
    }

    /// A comma-separated `--variants` list.
    pub fn parse_list(list: &str) -> Result<Vec<Arm>> {
        list.split(',').map(Arm::parse).collect()
    }

    /// One entry: `VARIANT` or `NAME:key=value+key=value`.
    pub fn parse(entry: &str) -> Result<Arm> {
        let entry = entry.trim();
        let bad = |m: String| Err(Error::Config(format!("--variants entry '{entry}': {m}")));
        let Some((name, rest)) = entry.split_once(':') else {
            return match entry.parse::<AttentionKind>() {
                Ok(kind) => Ok(Arm::variant(kind)),
                Err(e) => bad(format!(
                    "{e}; an arm with settings of its own is NAME:key=value+key=value (e.g. sgd:learning_rate=0.03)"
                )),
            };
        };
        let name = name.trim();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return bad("the arm's name must be letters, digits, '_' and '-'".into());
        }
        let named_kind = name.parse::<AttentionKind>().ok();
        let mut attention = None;
        let mut overrides = vec![];
        for o in split_overrides(rest) {
            let (key, value) = match parse_override(&o) {
                Ok(kv) => kv,
                Err(e) => return bad(e.to_string()),
            };
            if let Some((_, instead)) = EXPERIMENT_KEYS.iter().find(|(k, _)| *k == key) {
                return bad(format!("{key} is set by the experiment for every run ({instead}), not per arm"));
            }
            if key == "attention" {
                let text = value.as_str().map_or(value.to_string(), str::to_string);
                match text.parse::<AttentionKind>() {
                    Ok(k) => attention = Some(k),
                    Err(e) => return bad(e.to_string()),
                }
            } else {
                overrides.push(o);
            }
        }
        if overrides.is_empty() && attention.is_none() {
            return bad("no key=value after ':' (a variant alone is written without ':')".into());
        }
        let attention = match (named_kind, attention) {
            (Some(n), Some(a)) if n != a => {
                return bad(format!("the arm is named after the variant {n} but sets attention={a}; name it otherwise"))
            }
            (_, Some(a)) => a,
            (Some(n), None) => n,
            (None, None) => AttentionKind::Softmax,
        };
        Ok(Arm { name: name.to_string(), attention, overrides })
    }

    /// The overrides to apply: the arm's, and `lr_decay_iters` following an arm's own `max_iters`.
    pub fn effective_overrides(&self) -> Vec<String> {
        let key = |o: &String| parse_override(o).map(|(k, _)| k).unwrap_or_default();
        let mut all = self.overrides.clone();
        if let Some(m) = self.overrides.iter().rev().find(|o| key(o) == "max_iters") {
            if !self.overrides.iter().any(|o| key(o) == "lr_decay_iters") {
                all.push(format!("lr_decay_iters={}", m.split_once('=').map_or("", |(_, v)| v.trim())));
            }
        }
        all
    }

    /// `base` with the arm's overrides and attention.
    pub fn apply(&self, base: &Config) -> Result<Config> {
        let mut c = if self.overrides.is_empty() {
            base.clone()
        } else {
            base.with_overrides(&self.effective_overrides())
                .map_err(|e| Error::Config(format!("arm '{}': {e}", self.name)))?
        };
        c.attention = self.attention;
        Ok(c)
    }

    /// "sgd (softmax; optimizer=sgd, learning_rate=0.03)", or the variant's name alone.
    pub fn describe(&self) -> String {
        if self.overrides.is_empty() && self.name == self.attention.to_string() {
            return self.name.clone();
        }
        let mut what = vec![self.attention.to_string()];
        if !self.overrides.is_empty() {
            what.push(self.overrides.join(", "));
        }
        format!("{} ({})", self.name, what.join("; "))
    }
}

/// `a=1+b=2;c=3` → [a=1, b=2, c=3]: split at `;`, and at a `+` that starts the next `key=`.
fn split_overrides(s: &str) -> Vec<String> {
    let starts_key = |rest: &str| {
        let key: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-').collect();
        !key.is_empty() && rest[key.len()..].starts_with('=')
    };
    let mut parts = vec![];
    for chunk in s.split(';') {
        let mut start = 0;
        for (i, ch) in chunk.char_indices() {
            if ch == '+' && starts_key(&chunk[i + 1..]) {
                parts.push(chunk[start..i].trim().to_string());
                start = i + 1;
            }
        }
        parts.push(chunk[start..].trim().to_string());
    }
    parts.into_iter().filter(|p| !p.is_empty()).collect()
}
