//! Where values come from: a file, the environment, flags, laid over each other in the order
//! they are added (a later source wins, setting by setting).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{ConfigError, Reason};
use crate::setting::{Name, Setting, Source};

/// A value as written: one text, or a list (a TOML array).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// One value (a variable's, a flag's, a TOML string or number).
    One(String),
    /// A TOML array.
    Many(Vec<String>),
    /// A TOML table of texts, in the file's order (`[delivery.users]`: a user's
    /// destinations, an array's items joined by spaces). Only [`Setting::DeliveryUsers`]
    /// takes one.
    Table(Vec<(String, String)>),
}

/// The values of every setting some source sets, each with its source. Empty values count as
/// unset, whatever the source.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    values: BTreeMap<Setting, (Value, Source)>,
}

impl Sources {
    /// No values: every setting at its default.
    pub fn new() -> Self {
        Self::default()
    }

    /// The Lambda functions' sources: the environment, through `lookup` (usually
    /// `|name| std::env::var(name).ok()`).
    pub fn lambda(lookup: impl Fn(&str) -> Option<String>) -> Self {
        Self::new().env(lookup)
    }

    /// The command line's sources, in its order of precedence: the file (`--config`, else
    /// `KEYROT_CONFIG`, else none), then the environment through `lookup`, then `flags` (each a
    /// setting and the flag's value, if given).
    pub fn command_line(
        flags: &[(Setting, Option<String>)],
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let env = Self::new().env(&lookup);
        let flags = flags.iter().fold(Self::new(), |sources, (setting, value)| {
            sources.flag(*setting, value.clone())
        });
        let path = flags
            .text(Setting::Config)?
            .or(env.text(Setting::Config)?)
            .map(PathBuf::from);
        let file = match path {
            Some(path) => Self::new().file(&path)?,
            None => Self::new(),
        };
        Ok(file.over(env).over(flags))
    }

    /// These values, with every value `other` sets taking its place.
    pub fn over(mut self, other: Self) -> Self {
        self.values.extend(other.values);
        self
    }

    /// Lays the environment's variables over these values.
    pub fn env(mut self, lookup: impl Fn(&str) -> Option<String>) -> Self {
        for setting in Setting::ALL {
            if let Some(var) = setting.spelling().var
                && let Some(value) = lookup(var)
            {
                self.set(setting, Value::One(value), Source::Env);
            }
        }
        self
    }

    /// Lays a flag's value (if given) over these values.
    pub fn flag(mut self, setting: Setting, value: Option<String>) -> Self {
        if let Some(value) = value {
            self.set(setting, Value::One(value), Source::Flag);
        }
        self
    }

    /// Lays the TOML file at `path` over these values.
    pub fn file(self, path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        self.file_text(path, &text)
    }

    /// Lays `text`, the TOML file at `path`, over these values.
    pub fn file_text(mut self, path: &Path, text: &str) -> Result<Self, ConfigError> {
        let table: toml::Table = toml::from_str(text).map_err(|source| ConfigError::Toml {
            path: path.to_owned(),
            source,
        })?;
        let unknown = |key: String| ConfigError::Unknown {
            path: path.to_owned(),
            key,
        };
        for (key, value) in table {
            match value {
                toml::Value::Table(section) => {
                    if !Setting::ALL.iter().any(
                        |setting| matches!(setting.spelling().file, Some((Some(s), _)) if s == key),
                    ) {
                        return Err(unknown(format!("[{key}]")));
                    }
                    for (inner, value) in section {
                        let setting = file_setting(Some(&key), &inner)
                            .ok_or_else(|| unknown(format!("[{key}] {inner}")))?;
                        self.set_from_file(setting, value, path)?;
                    }
                }
                value => {
                    let setting = file_setting(None, &key).ok_or_else(|| unknown(key.clone()))?;
                    self.set_from_file(setting, value, path)?;
                }
            }
        }
        Ok(self)
    }

    fn set_from_file(
        &mut self,
        setting: Setting,
        value: toml::Value,
        path: &Path,
    ) -> Result<(), ConfigError> {
        let source = Source::File(path.to_owned());
        let invalid = |reason| ConfigError::Invalid {
            name: Name {
                setting,
                source: Some(source.clone()),
            },
            reason,
        };
        let value = match value {
            toml::Value::Table(entries) if setting == Setting::DeliveryUsers => Value::Table(
                entries
                    .into_iter()
                    .map(|(key, value)| Ok((key, words(value).map_err(invalid)?)))
                    .collect::<Result<_, _>>()?,
            ),
            toml::Value::Array(items) => Value::Many(
                items
                    .into_iter()
                    .map(|item| scalar(item).map_err(invalid))
                    .collect::<Result<_, _>>()?,
            ),
            item => Value::One(scalar(item).map_err(invalid)?),
        };
        self.set(setting, value, source);
        Ok(())
    }

    fn set(&mut self, setting: Setting, value: Value, source: Source) {
        let empty = match &value {
            Value::One(text) => text.trim().is_empty(),
            Value::Many(items) => items.iter().all(|item| item.trim().is_empty()),
            Value::Table(entries) => entries.is_empty(),
        };
        // An empty value leaves the lower sources' value in place.
        if !empty {
            self.values.insert(setting, (value, source));
        }
    }

    /// The setting as the user wrote it (or, if nobody did, by its variable).
    pub fn name(&self, setting: Setting) -> Name {
        Name {
            setting,
            source: self.values.get(&setting).map(|(_, source)| source.clone()),
        }
    }

    /// The value of `setting`, if any source sets it.
    pub fn value(&self, setting: Setting) -> Option<&Value> {
        self.values.get(&setting).map(|(value, _)| value)
    }

    /// Whether any source sets `setting`.
    pub fn is_set(&self, setting: Setting) -> bool {
        self.values.contains_key(&setting)
    }

    /// The one value of `setting`, trimmed, if set.
    pub fn text(&self, setting: Setting) -> Result<Option<String>, ConfigError> {
        match self.value(setting) {
            None => Ok(None),
            Some(Value::One(text)) => Ok(Some(text.trim().to_owned())),
            Some(Value::Many(_)) => Err(self.invalid(setting, Reason::NotOne)),
            Some(Value::Table(_)) => Err(self.invalid(setting, Reason::Kind("a table"))),
        }
    }

    /// The value of a required setting.
    pub fn require(&self, setting: Setting) -> Result<String, ConfigError> {
        self.text(setting)?.ok_or(ConfigError::Missing(setting))
    }

    /// The values of a list setting, if set: a TOML array, or one value split at commas; each
    /// trimmed, empty ones dropped.
    pub fn list(&self, setting: Setting) -> Option<Vec<String>> {
        let items: Vec<&str> = match self.value(setting)? {
            Value::One(text) => text.split(',').collect(),
            Value::Many(items) => items.iter().map(String::as_str).collect(),
            Value::Table(entries) => entries.iter().map(|(_, text)| text.as_str()).collect(),
        };
        Some(
            items
                .into_iter()
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(str::to_owned)
                .collect(),
        )
    }

    /// `setting`'s value refused for `reason`.
    pub fn invalid(&self, setting: Setting, reason: impl Into<Reason>) -> ConfigError {
        ConfigError::Invalid {
            name: self.name(setting),
            reason: reason.into(),
        }
    }
}

/// The setting a file's key names.
fn file_setting(section: Option<&str>, key: &str) -> Option<Setting> {
    Setting::ALL
        .into_iter()
        .find(|setting| setting.spelling().file == Some((section, key)))
}

/// A TOML value as text: strings as they are, numbers and booleans as TOML writes them.
fn scalar(value: toml::Value) -> Result<String, Reason> {
    match value {
        toml::Value::String(text) => Ok(text),
        toml::Value::Integer(n) => Ok(n.to_string()),
        toml::Value::Float(x) => Ok(x.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        toml::Value::Datetime(d) => Ok(d.to_string()),
        toml::Value::Array(_) => Err(Reason::Kind("a nested list")),
        toml::Value::Table(_) => Err(Reason::Kind("a table")),
    }
}

/// A table entry's value as text: a string, or an array of strings joined by spaces.
fn words(value: toml::Value) -> Result<String, Reason> {
    match value {
        toml::Value::Array(items) => Ok(items
            .into_iter()
            .map(scalar)
            .collect::<Result<Vec<_>, _>>()?
            .join(" ")),
        item => scalar(item),
    }
}

/// A variable lookup over fixed pairs, for [`Sources::env`] when the variables come from
/// somewhere other than the process environment (a map, a test). The first pair of a name
/// wins.
pub fn lookup_in(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}
