//! The CloudTrail record model, parsed tolerantly.
//!
//! A record may come bare (as in a CloudTrail log file) or inside an
//! EventBridge envelope (`detail`). Real records vary: fields are missing,
//! null, or of another type. Parsing accepts all of that and is strict only
//! about what a decision needs: `eventID`, `eventTime`, `eventSource`,
//! `eventName`, an account and a region.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// Records larger than this are refused before parsing.
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;

/// Why a document is not a usable CloudTrail record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("not valid JSON: {0}")]
    Json(String),
    #[error("record is {0} bytes, over the {MAX_RECORD_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("not a JSON object")]
    NotAnObject,
    #[error("missing or empty `{0}`")]
    Missing(&'static str),
    #[error("`eventTime` `{0}` is not an RFC 3339 time")]
    BadTime(String),
    #[error("EventBridge event of detail-type `{0}` is not a CloudTrail record")]
    NotCloudTrail(String),
    /// Only AWS services put `aws.*` events on a bus; anything else is
    /// someone's own event made to look like CloudTrail.
    #[error(
        "EventBridge event from source `{0}`, not an AWS service (`aws.*`): not a CloudTrail record"
    )]
    ForeignSource(String),
}

/// The kinds of `userIdentity.type` CloudTrail documents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityType {
    Root,
    IAMUser,
    AssumedRole,
    Role,
    FederatedUser,
    AWSAccount,
    AWSService,
    IdentityCenterUser,
    SAMLUser,
    WebIdentityUser,
    Directory,
    Unknown,
    /// A type this version does not know, kept as written.
    Other(String),
    /// No `userIdentity.type` at all.
    Missing,
}

impl IdentityType {
    fn from_str(s: Option<&str>) -> Self {
        match s {
            None => Self::Missing,
            Some("Root") => Self::Root,
            Some("IAMUser") => Self::IAMUser,
            Some("AssumedRole") => Self::AssumedRole,
            Some("Role") => Self::Role,
            Some("FederatedUser") => Self::FederatedUser,
            Some("AWSAccount") => Self::AWSAccount,
            Some("AWSService") => Self::AWSService,
            Some("IdentityCenterUser") => Self::IdentityCenterUser,
            Some("SAMLUser") => Self::SAMLUser,
            Some("WebIdentityUser") => Self::WebIdentityUser,
            Some("Directory") => Self::Directory,
            Some("Unknown") => Self::Unknown,
            Some(other) => Self::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Root => "Root",
            Self::IAMUser => "IAMUser",
            Self::AssumedRole => "AssumedRole",
            Self::Role => "Role",
            Self::FederatedUser => "FederatedUser",
            Self::AWSAccount => "AWSAccount",
            Self::AWSService => "AWSService",
            Self::IdentityCenterUser => "IdentityCenterUser",
            Self::SAMLUser => "SAMLUser",
            Self::WebIdentityUser => "WebIdentityUser",
            Self::Directory => "Directory",
            Self::Unknown => "Unknown",
            Self::Other(s) => s,
            Self::Missing => "",
        }
    }
}

/// The role (or user) that issued a temporary session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionIssuer {
    pub kind: Option<String>,
    pub arn: Option<String>,
    pub user_name: Option<String>,
    pub account_id: Option<String>,
    pub principal_id: Option<String>,
}

/// `userIdentity`, flattened to what decisions and correlation need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub kind: IdentityType,
    pub principal_id: Option<String>,
    pub arn: Option<String>,
    pub account_id: Option<String>,
    pub access_key_id: Option<String>,
    pub user_name: Option<String>,
    pub invoked_by: Option<String>,
    pub session_issuer: Option<SessionIssuer>,
    /// `sessionContext.attributes.mfaAuthenticated`.
    pub mfa_authenticated: Option<bool>,
    /// `sessionContext.attributes.creationDate`.
    pub session_created: Option<String>,
    /// `sessionContext.sourceIdentity`.
    pub source_identity: Option<String>,
    /// `onBehalfOf.userId` (Identity Center).
    pub on_behalf_of: Option<String>,
}

impl Default for Identity {
    fn default() -> Self {
        Self {
            kind: IdentityType::Missing,
            principal_id: None,
            arn: None,
            account_id: None,
            access_key_id: None,
            user_name: None,
            invoked_by: None,
            session_issuer: None,
            mfa_authenticated: None,
            session_created: None,
            source_identity: None,
            on_behalf_of: None,
        }
    }
}

/// The EventBridge envelope around a record, when there was one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Envelope {
    pub id: Option<String>,
    pub detail_type: String,
    pub source: Option<String>,
    /// Set by EventBridge to the sending account; cannot be forged.
    pub account: Option<String>,
    pub region: Option<String>,
}

/// One CloudTrail record.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub event_id: String,
    pub event_time: String,
    /// `eventTime` as Unix seconds.
    pub event_timestamp: i64,
    pub event_source: String,
    pub event_name: String,
    /// `awsRegion`, else the envelope's region.
    pub region: String,
    /// `recipientAccountId`, else `userIdentity.accountId`, else the envelope's.
    pub account: String,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub read_only: Option<bool>,
    pub event_type: Option<String>,
    pub identity: Identity,
    pub request_parameters: Value,
    pub response_elements: Value,
    pub additional_event_data: Value,
    pub service_event_details: Value,
    pub envelope: Option<Envelope>,
}

impl Record {
    /// Parse one JSON document (bare record or envelope) from bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, RecordError> {
        if bytes.len() > MAX_RECORD_BYTES {
            return Err(RecordError::TooLarge(bytes.len()));
        }
        let raw: LenientObject<RawDoc> = serde_json::from_slice(bytes).map_err(json_error)?;
        raw.0.ok_or(RecordError::NotAnObject)?.into_record()
    }

    /// Parse an already-decoded JSON value (bare record or envelope).
    pub fn from_value(value: &Value) -> Result<Self, RecordError> {
        if !value.is_object() {
            return Err(RecordError::NotAnObject);
        }
        let raw = RawDoc::deserialize(value).map_err(json_error)?;
        raw.into_record()
    }

    /// A string field of `requestParameters`.
    pub fn request_str(&self, key: &str) -> Option<&str> {
        non_empty(self.request_parameters.get(key)?.as_str()?)
    }

    /// A string at a path inside `responseElements`.
    pub fn response_str(&self, path: &[&str]) -> Option<&str> {
        str_at(&self.response_elements, path)
    }

    pub fn additional_str(&self, key: &str) -> Option<&str> {
        str_at(&self.additional_event_data, &[key])
    }

    pub fn service_detail_str(&self, key: &str) -> Option<&str> {
        str_at(&self.service_event_details, &[key])
    }
}

pub fn str_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = value;
    for key in path {
        cur = cur.get(key)?;
    }
    non_empty(cur.as_str()?)
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

fn json_error(e: serde_json::Error) -> RecordError {
    if e.is_data() {
        // Our raw types accept anything, so a data error means the document
        // itself was not an object.
        RecordError::NotAnObject
    } else {
        RecordError::Json(e.to_string())
    }
}

/// Parse an RFC 3339 time to Unix seconds.
pub fn parse_time(s: &str) -> Option<i64> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(time::OffsetDateTime::unix_timestamp)
}

// ---------------------------------------------------------------------------
// Raw, tolerant serde shapes. Every field accepts any JSON type; a value of
// the wrong type reads as absent.

/// A string, or a number or bool written as text; anything else is absent.
#[derive(Debug, Default)]
struct Lenient(Option<String>);

impl<'de> Deserialize<'de> for Lenient {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Lenient;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Lenient, E> {
                Ok(Lenient(Some(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Lenient, E> {
                Ok(Lenient(Some(v)))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Lenient, E> {
                Ok(Lenient(Some(v.to_string())))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Lenient, E> {
                Ok(Lenient(Some(v.to_string())))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Lenient, E> {
                Ok(Lenient(Some(v.to_string())))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Lenient, E> {
                Ok(Lenient(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Lenient, E> {
                Ok(Lenient(None))
            }
            fn visit_none<E: de::Error>(self) -> Result<Lenient, E> {
                Ok(Lenient(None))
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Lenient, D::Error> {
                d.deserialize_any(self)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Lenient, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Lenient(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Lenient, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Lenient(None))
            }
        }
        d.deserialize_any(V)
    }
}

impl Lenient {
    fn take(self) -> Option<String> {
        self.0.filter(|s| !s.is_empty())
    }
}

/// An object of type `T`, or absent when the value is of another type.
#[derive(Debug)]
struct LenientObject<T>(Option<T>);

impl<T> Default for LenientObject<T> {
    fn default() -> Self {
        Self(None)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for LenientObject<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = LenientObject<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(|t| LenientObject(Some(t)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(LenientObject(None))
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                d.deserialize_any(self)
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(LenientObject(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(LenientObject(None))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(LenientObject(None))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(LenientObject(None))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(LenientObject(None))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(LenientObject(None))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(LenientObject(None))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawIssuer {
    #[serde(default, rename = "type")]
    kind: Lenient,
    #[serde(default)]
    arn: Lenient,
    #[serde(default)]
    user_name: Lenient,
    #[serde(default)]
    account_id: Lenient,
    #[serde(default)]
    principal_id: Lenient,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawAttributes {
    #[serde(default)]
    creation_date: Lenient,
    #[serde(default)]
    mfa_authenticated: Lenient,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawSessionContext {
    #[serde(default)]
    session_issuer: LenientObject<RawIssuer>,
    #[serde(default)]
    attributes: LenientObject<RawAttributes>,
    #[serde(default)]
    source_identity: Lenient,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawOnBehalfOf {
    #[serde(default)]
    user_id: Lenient,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawIdentity {
    #[serde(default, rename = "type")]
    kind: Lenient,
    #[serde(default)]
    principal_id: Lenient,
    #[serde(default)]
    arn: Lenient,
    #[serde(default)]
    account_id: Lenient,
    #[serde(default)]
    access_key_id: Lenient,
    #[serde(default)]
    user_name: Lenient,
    #[serde(default)]
    invoked_by: Lenient,
    #[serde(default)]
    session_context: LenientObject<RawSessionContext>,
    #[serde(default)]
    on_behalf_of: LenientObject<RawOnBehalfOf>,
}

/// Both a bare record's fields and an envelope's, read in one pass.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDoc {
    #[serde(default, rename = "eventID")]
    event_id: Lenient,
    #[serde(default)]
    event_time: Lenient,
    #[serde(default)]
    event_source: Lenient,
    #[serde(default)]
    event_name: Lenient,
    #[serde(default)]
    aws_region: Lenient,
    #[serde(default, rename = "sourceIPAddress")]
    source_ip_address: Lenient,
    #[serde(default)]
    user_agent: Lenient,
    #[serde(default)]
    error_code: Lenient,
    #[serde(default)]
    error_message: Lenient,
    #[serde(default)]
    read_only: Lenient,
    #[serde(default)]
    event_type: Lenient,
    #[serde(default)]
    recipient_account_id: Lenient,
    #[serde(default)]
    user_identity: LenientObject<RawIdentity>,
    #[serde(default)]
    request_parameters: Option<Value>,
    #[serde(default)]
    response_elements: Option<Value>,
    #[serde(default)]
    additional_event_data: Option<Value>,
    #[serde(default)]
    service_event_details: Option<Value>,
    // Envelope fields.
    #[serde(default, rename = "detail-type")]
    detail_type: Lenient,
    #[serde(default)]
    detail: LenientObject<Box<RawDoc>>,
    #[serde(default)]
    id: Lenient,
    #[serde(default)]
    source: Lenient,
    #[serde(default)]
    account: Lenient,
    #[serde(default)]
    region: Lenient,
}

impl RawDoc {
    fn into_record(mut self) -> Result<Record, RecordError> {
        let detail_type = std::mem::take(&mut self.detail_type).take();
        match (detail_type, self.detail.0.take()) {
            (Some(detail_type), Some(detail)) => {
                let envelope = Envelope {
                    id: self.id.take(),
                    detail_type,
                    source: self.source.take(),
                    account: self.account.take(),
                    region: self.region.take(),
                };
                if detail.event_name.0.is_none() && detail.event_id.0.is_none() {
                    return Err(RecordError::NotCloudTrail(envelope.detail_type));
                }
                match &envelope.source {
                    Some(source) if source.starts_with("aws.") => {}
                    other => {
                        return Err(RecordError::ForeignSource(
                            other.clone().unwrap_or_default(),
                        ));
                    }
                }
                detail.into_bare(Some(envelope))
            }
            (Some(detail_type), None) => Err(RecordError::NotCloudTrail(detail_type)),
            (None, _) => self.into_bare(None),
        }
    }

    fn into_bare(self, envelope: Option<Envelope>) -> Result<Record, RecordError> {
        let event_id = self
            .event_id
            .take()
            .ok_or(RecordError::Missing("eventID"))?;
        let event_source = self
            .event_source
            .take()
            .ok_or(RecordError::Missing("eventSource"))?;
        let event_name = self
            .event_name
            .take()
            .ok_or(RecordError::Missing("eventName"))?;
        let event_time = self
            .event_time
            .take()
            .ok_or(RecordError::Missing("eventTime"))?;
        let event_timestamp =
            parse_time(&event_time).ok_or_else(|| RecordError::BadTime(event_time.clone()))?;
        let identity = self
            .user_identity
            .0
            .map(RawIdentity::into_identity)
            .unwrap_or_default();
        let region = self
            .aws_region
            .take()
            .or_else(|| envelope.as_ref().and_then(|e| e.region.clone()))
            .ok_or(RecordError::Missing("awsRegion"))?;
        let account = self
            .recipient_account_id
            .take()
            .or_else(|| identity.account_id.clone())
            .or_else(|| envelope.as_ref().and_then(|e| e.account.clone()))
            .ok_or(RecordError::Missing("recipientAccountId"))?;
        let read_only = match self.read_only.take().as_deref() {
            Some(s) if s.eq_ignore_ascii_case("true") => Some(true),
            Some(s) if s.eq_ignore_ascii_case("false") => Some(false),
            _ => None,
        };
        Ok(Record {
            event_id,
            event_time,
            event_timestamp,
            event_source,
            event_name,
            region,
            account,
            source_ip: self.source_ip_address.take(),
            user_agent: self.user_agent.take(),
            error_code: self.error_code.take(),
            error_message: self.error_message.take(),
            read_only,
            event_type: self.event_type.take(),
            identity,
            request_parameters: self.request_parameters.unwrap_or(Value::Null),
            response_elements: self.response_elements.unwrap_or(Value::Null),
            additional_event_data: self.additional_event_data.unwrap_or(Value::Null),
            service_event_details: self.service_event_details.unwrap_or(Value::Null),
            envelope,
        })
    }
}

impl RawIdentity {
    fn into_identity(self) -> Identity {
        let context = self.session_context.0.unwrap_or_default();
        let attributes = context.attributes.0.unwrap_or_default();
        let issuer = context.session_issuer.0.map(|i| SessionIssuer {
            kind: i.kind.take(),
            arn: i.arn.take(),
            user_name: i.user_name.take(),
            account_id: i.account_id.take(),
            principal_id: i.principal_id.take(),
        });
        let kind_text = self.kind.take();
        Identity {
            kind: IdentityType::from_str(kind_text.as_deref()),
            principal_id: self.principal_id.take(),
            arn: self.arn.take(),
            account_id: self.account_id.take(),
            access_key_id: self.access_key_id.take(),
            user_name: self.user_name.take(),
            invoked_by: self.invoked_by.take(),
            session_issuer: issuer.filter(|i| i.arn.is_some() || i.user_name.is_some()),
            mfa_authenticated: attributes
                .mfa_authenticated
                .take()
                .map(|s| s.eq_ignore_ascii_case("true")),
            session_created: attributes.creation_date.take(),
            source_identity: context.source_identity.take(),
            on_behalf_of: self.on_behalf_of.0.and_then(|o| o.user_id.take()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BARE: &str = r#"{"eventVersion":"1.08","eventID":"e1","eventTime":"2026-11-02T10:00:00Z",
        "eventSource":"s3.amazonaws.com","eventName":"ListBuckets","awsRegion":"eu-west-1",
        "recipientAccountId":"111122223333","readOnly":true,"requestParameters":null,
        "userIdentity":{"type":"IAMUser","userName":"alice","arn":"arn:aws:iam::111122223333:user/alice",
        "sessionContext":{"attributes":{"mfaAuthenticated":"true","creationDate":"2026-11-02T09:59:00Z"}}}}"#;

    #[test]
    fn bare_record() {
        let r = Record::from_slice(BARE.as_bytes()).unwrap();
        assert_eq!(r.event_id, "e1");
        assert_eq!(r.identity.kind, IdentityType::IAMUser);
        assert_eq!(r.identity.mfa_authenticated, Some(true));
        assert_eq!(r.read_only, Some(true));
        assert!(r.request_parameters.is_null());
        assert!(r.envelope.is_none());
        assert_eq!(r.event_timestamp, 1_793_613_600);
    }

    #[test]
    fn envelope_record_and_value_path_agree() {
        let env = format!(
            r#"{{"version":"0","id":"x","detail-type":"AWS API Call via CloudTrail","source":"aws.s3",
            "account":"111122223333","time":"2026-11-02T10:00:01Z","region":"eu-west-1","resources":[],"detail":{BARE}}}"#
        );
        let a = Record::from_slice(env.as_bytes()).unwrap();
        let b = Record::from_value(&serde_json::from_str(&env).unwrap()).unwrap();
        assert_eq!(a, b);
        assert_eq!(
            a.envelope.as_ref().unwrap().account.as_deref(),
            Some("111122223333")
        );
        assert_eq!(a.event_name, "ListBuckets");
    }

    #[test]
    fn odd_types_read_as_absent() {
        let doc = r#"{"eventID":"e","eventTime":"2026-11-02T10:00:00Z","eventSource":"x","eventName":"Y",
            "awsRegion":"us-east-1","recipientAccountId":111122223333,"userAgent":["a"],"readOnly":"true",
            "userIdentity":"weird","errorCode":{"x":1}}"#;
        let r = Record::from_slice(doc.as_bytes()).unwrap();
        assert_eq!(r.account, "111122223333");
        assert_eq!(r.user_agent, None);
        assert_eq!(r.read_only, Some(true));
        assert_eq!(r.identity.kind, IdentityType::Missing);
        assert_eq!(r.error_code, None);
    }

    #[test]
    fn clear_errors() {
        let missing = r#"{"eventID":"e","eventTime":"2026-11-02T10:00:00Z","eventSource":"x","awsRegion":"r","recipientAccountId":"1"}"#;
        assert_eq!(
            Record::from_slice(missing.as_bytes()),
            Err(RecordError::Missing("eventName"))
        );
        let bad_time = r#"{"eventID":"e","eventTime":"yesterday","eventSource":"x","eventName":"y","awsRegion":"r","recipientAccountId":"1"}"#;
        assert_eq!(
            Record::from_slice(bad_time.as_bytes()),
            Err(RecordError::BadTime("yesterday".into()))
        );
        assert_eq!(Record::from_slice(b"[1,2]"), Err(RecordError::NotAnObject));
        assert!(matches!(
            Record::from_slice(b"{"),
            Err(RecordError::Json(_))
        ));
        let heartbeat = r#"{"detail-type":"Scheduled Event","source":"aws.events","detail":{}}"#;
        assert_eq!(
            Record::from_slice(heartbeat.as_bytes()),
            Err(RecordError::NotCloudTrail("Scheduled Event".into()))
        );
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = format!(
            r#"{{"requestParameters":{}{}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert!(matches!(
            Record::from_slice(deep.as_bytes()),
            Err(RecordError::Json(_))
        ));
        let big = vec![b' '; MAX_RECORD_BYTES + 1];
        assert_eq!(
            Record::from_slice(&big),
            Err(RecordError::TooLarge(MAX_RECORD_BYTES + 1))
        );
    }
}
