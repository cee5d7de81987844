//! The named presets, one TOML file each in `configs/`, built into the binary.

use crate::{Error, Result};

/// A named preset: a TOML file of `configs/`, overrides of the defaults, built into the binary. Its first
/// line is a `# ` comment that describes it (`quietgpt presets` lists it).
pub struct Preset {
    pub name: &'static str,
    pub toml: &'static str,
}

impl Preset {
    /// The description: the file's first line, without its `# `.
    pub fn about(&self) -> &'static str {
        self.toml.lines().next().and_then(|l| l.strip_prefix('#')).map_or("", str::trim)
    }
}

macro_rules! presets {
    ($($name:literal),* $(,)?) => {
        &[$(Preset { name: $name, toml: include_str!(concat!("../../configs/", $name, ".toml")) }),*]
    };
}

/// Every preset, one file each in `configs/`.
pub const PRESETS: &[Preset] = presets![
    "default",
    "gpt2-124m",
    "shakespeare-char",
    "shakespeare-char-cpu",
    "tiny",
    "medium",
    "experiment",
    "experiment-quick",
    "experiment-bb",
    "experiment-bb-quick",
    "bb-guo",
];

pub(super) fn merge_preset(table: &mut toml::Table, name: &str) -> Result<()> {
    let preset = PRESETS.iter().find(|p| p.name == name).ok_or_else(|| {
        let names: Vec<&str> = PRESETS.iter().map(|p| p.name).collect();
        Error::Config(format!("unknown preset '{name}': expected one of {}", names.join(", ")))
    })?;
    let t: toml::Table = preset.toml.parse().expect("presets are valid TOML");
    table.extend(t);
    Ok(())
}
