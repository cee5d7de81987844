//! `--key=value` overrides, and error messages that name the key at fault.

use super::Config;
use crate::{Error, Result};

/// `key=value` → (key, TOML value), the value read as the key's declared type (that of its default):
/// a string key (`out_dir`, `attention`, …) takes the text as it is (`2024`, `inf`, `out/run1`), or the
/// string of a TOML string literal (`"a b"`); an integer, float or boolean key parses the text as TOML and
/// must get its type, else the error names the key, the value and the type. An unknown key's value is
/// read as TOML or else taken as a string (the config then refuses the key).
pub fn parse_override(s: &str) -> Result<(String, toml::Value)> {
    let s = s.strip_prefix("--").unwrap_or(s);
    let (k, v) =
        s.split_once('=').ok_or_else(|| Error::Config(format!("override '{s}' is not of the form key=value")))?;
    let k = k.trim().replace('-', "_");
    if k.is_empty() {
        return Err(Error::Config(format!("override '{s}' has an empty key")));
    }
    let as_toml = format!("v = {v}").parse::<toml::Table>().ok().and_then(|mut t| t.remove("v"));
    let defaults = toml::Table::try_from(Config::default()).expect("defaults serialise");
    let bad = |expected: &str| Error::Config(format!("--{k}={v}: {k} takes {expected}, not '{v}'"));
    let value = match (defaults.get(&k), as_toml) {
        (Some(toml::Value::String(_)), Some(toml::Value::String(text))) => toml::Value::String(text),
        (Some(toml::Value::String(_)), _) => toml::Value::String(v.to_string()),
        (Some(toml::Value::Integer(_)), Some(toml::Value::Integer(i))) if i >= 0 => toml::Value::Integer(i),
        (Some(toml::Value::Integer(_)), _) => return Err(bad("a non-negative integer")),
        (Some(toml::Value::Float(_)), Some(toml::Value::Float(x))) => toml::Value::Float(x),
        (Some(toml::Value::Float(_)), Some(toml::Value::Integer(i))) => toml::Value::Float(i as f64),
        (Some(toml::Value::Float(_)), _) => return Err(bad("a number (e.g. 3e-4)")),
        (Some(toml::Value::Boolean(_)), Some(toml::Value::Boolean(b))) => toml::Value::Boolean(b),
        (Some(toml::Value::Boolean(_)), _) => return Err(bad("true or false")),
        (_, Some(value)) => value,
        (_, None) => toml::Value::String(v.to_string()),
    };
    Ok((k, value))
}

/// Turn serde's message into one that names the offending key: an unknown key says how to list the
/// known ones; a value of the wrong type is found by trying each key alone on the defaults.
pub(super) fn explain(table: &toml::Table, e: toml::de::Error) -> String {
    let msg = e.message().to_string();
    if msg.starts_with("unknown field") {
        return format!("{msg}. Run `quietgpt config` to list every key with its default");
    }
    let defaults = toml::Table::try_from(Config::default()).expect("defaults serialise");
    for (k, v) in table {
        let mut t = defaults.clone();
        t.insert(k.clone(), v.clone());
        if let Err(e) = t.try_into::<Config>() {
            return format!("{k} = {v}: {}", e.message());
        }
    }
    msg
}
