//! Where the tokens come from (`DataKind`).

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// `data`: a prepared text directory (`data_dir`, nanoGPT's), or the synthetic Bigram-Backcopy task
/// generated on the fly (`crate::data::Backcopy`: no files; `data_dir` is not read).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataKind {
    #[default]
    Text,
    Backcopy,
}

impl DataKind {
    pub const ALL: [DataKind; 2] = [DataKind::Text, DataKind::Backcopy];

    pub fn name(self) -> &'static str {
        match self {
            DataKind::Text => "text",
            DataKind::Backcopy => "backcopy",
        }
    }
}

impl FromStr for DataKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        DataKind::ALL
            .into_iter()
            .find(|d| d.name() == s)
            .ok_or_else(|| Error::Config(format!("unknown data '{s}': expected one of text, backcopy")))
    }
}

impl std::fmt::Display for DataKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
