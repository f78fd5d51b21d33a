//! The query string of a request, and its decoding into a verb's options.
//!
//! As upstream converts `url.Values` into options structs: a parameter given twice counts by its
//! first value, unknown parameters are ignored, and a known one with a value of the wrong form is
//! a 400 naming the parameter and the form it takes.

use crate::error::{ApiError, ApiResult};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// The query parameters of a request, in order.
#[derive(Debug, Default, Clone)]
pub struct Query(Vec<(String, String)>);

impl Query {
    /// Parses a raw query string.
    pub fn parse(raw: Option<&str>) -> ApiResult<Query> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or(""))
            .map_err(|e| ApiError::bad_request(format!("invalid query string: {e}")))?;
        Ok(Query(pairs))
    }

    /// The first value of a parameter, as upstream reads it.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a parameter, for the ones that are lists (`dryRun`).
    pub fn all(&self, key: &str) -> impl Iterator<Item = &str> {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Decodes the options `T` from the parameters. Each field of `T` reads the first value of
    /// its parameter (as a string; see `params` for the typed forms); `dryRun` reads them all.
    pub fn decode<T: DeserializeOwned>(&self) -> ApiResult<T> {
        let mut map = Map::new();
        for (k, v) in &self.0 {
            if k == "dryRun" {
                let list = map
                    .entry(k.clone())
                    .or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(values) = list {
                    values.push(Value::String(v.clone()));
                }
            } else if !map.contains_key(k) {
                map.insert(k.clone(), Value::String(v.clone()));
            }
        }
        serde_path_to_error::deserialize(Value::Object(map)).map_err(|e| {
            let parameter = e.path().to_string();
            ApiError::bad_request(format!(
                "invalid query parameter \"{parameter}\": {}",
                e.into_inner()
            ))
        })
    }
}
