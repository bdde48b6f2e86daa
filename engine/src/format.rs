//! How a source's bytes become events: the format and its settings.

use schemars::JsonSchema;
use serde::Deserialize;

use crate::registry::Issue;

/// Where to find the event name, time and properties in JSON records that are not in
/// Mixpanel's `{"event", "properties"}` shape (the `records` format). Paths are dotted
/// (`data.event`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordsFormat {
    /// The field holding the event name.
    #[serde(default)]
    pub event_field: Option<String>,
    /// The event name of records that have no `event_field` (or of all records without one).
    #[serde(default)]
    pub event_name: Option<String>,
    /// The field holding the time: epoch seconds, milliseconds or microseconds, or an ISO-8601, RFC 2822 or
    /// `Sat Jun 13 02:03:55 +0000 2015` string.
    #[serde(default)]
    pub time_field: Option<String>,
    /// The time (epoch seconds) of records that have no usable time; without it they are dead
    /// letters.
    #[serde(default)]
    pub default_time: Option<i64>,
    /// The field holding `distinct_id`.
    #[serde(default)]
    pub distinct_id_field: Option<String>,
    /// The object whose keys are the properties; the record itself by default (less the event,
    /// time and distinct_id fields).
    #[serde(default)]
    pub properties_field: Option<String>,
    /// For a JSON document that holds many records: the array (or object of records) at this
    /// path (`.` for the document itself, e.g. an object of records). Without it, a line
    /// holding an array is read as one record per element.
    #[serde(default)]
    pub records_at: Option<String>,
}

/// What a decoder is built from.
#[derive(Clone, Debug, Default)]
pub struct DecoderSettings {
    pub records: RecordsFormat,
}

impl DecoderSettings {
    /// The settings of a source with `format` and optional `records` settings, or the problem
    /// with them: `records` only applies to `format: records`.
    pub fn of(format: &str, records: &Option<RecordsFormat>) -> Result<Self, Issue> {
        if records.is_some() && format != "records" {
            return Err(Issue::at(
                "records",
                "`records` settings apply only with `format: records`",
                "set `format: records`, or remove `records`",
            ));
        }
        Ok(DecoderSettings {
            records: records.clone().unwrap_or_default(),
        })
    }
}
