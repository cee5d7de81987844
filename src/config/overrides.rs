//! `--key=value` overrides, and error messages that name the key at fault.

use super::Config;
use crate::{Error, Result};

/// `key=value` → (key, TOML value). The value is read as TOML (`6`, `1e-3`, `true`, `"x"`); anything that
/// does not parse, such as `quiet` or `out/run1`, is taken as a string.
pub fn parse_override(s: &str) -> Result<(String, toml::Value)> {
    let s = s.strip_prefix("--").unwrap_or(s);
    let (k, v) =
        s.split_once('=').ok_or_else(|| Error::Config(format!("override '{s}' is not of the form key=value")))?;
    let k = k.trim().replace('-', "_");
    if k.is_empty() {
        return Err(Error::Config(format!("override '{s}' has an empty key")));
    }
    let value = match format!("v = {v}").parse::<toml::Table>() {
        Ok(mut t) => t.remove("v").expect("just inserted"),
        Err(_) => toml::Value::String(v.to_string()),
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
