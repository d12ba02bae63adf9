//! The MID registry: enrollment tokens, enrollment, session authentication, validation.

pub mod lifecycle;

use crate::auth::{hash_token, new_token, token_matches};
use crate::ecc::{EnrollError, EnrollmentTokenRow, Load, MidKey, MidRow, Store, StoreError};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use openmid_proto::api::{EnrollmentToken, MidInfo, NewEnrollmentToken};
use openmid_proto::iprange::IpRanges;
use openmid_proto::mid::MidProfile;
use openmid_proto::mid::{EnrollRequest, EnrollResponse, MidStatus};
use openmid_proto::secret::Secret;
use openmid_proto::time::{now_ms, rfc3339};
use openmid_proto::{MIN_PROTOCOL_VERSION, PROTOCOL_VERSION, is_valid_name};

/// Default and longest lifetime of an enrollment token.
const DEFAULT_TOKEN_TTL_SECS: u64 = 3600;
const MAX_TOKEN_TTL_SECS: u64 = 30 * 86_400;

/// Errors of registry operations, each with a message that says what to do.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A request field is wrong.
    #[error("{field}: {message}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// The MID speaks another protocol version.
    #[error(
        "MID speaks protocol {mid}, this instance speaks {instance}: upgrade the {older} to a release with protocol {newer}"
    )]
    ProtocolMismatch {
        /// The MID's version.
        mid: u32,
        /// Ours.
        instance: u32,
        /// Which side is older.
        older: &'static str,
        /// The version to upgrade to.
        newer: u32,
    },
    /// Enrollment refused.
    #[error(transparent)]
    Enroll(#[from] EnrollError),
    /// Authentication failed.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// The MID was invalidated.
    #[error("this MID was invalidated by an admin: enroll it again with a new token")]
    Invalidated,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Makes a one-time enrollment token; only its hash is kept.
pub async fn create_enrollment_token(
    store: &dyn Store,
    req: &NewEnrollmentToken,
) -> Result<EnrollmentToken, RegistryError> {
    let ttl = req.ttl_secs.unwrap_or(DEFAULT_TOKEN_TTL_SECS);
    if ttl == 0 || ttl > MAX_TOKEN_TTL_SECS {
        return Err(RegistryError::Invalid {
            field: "ttl_secs",
            message: format!("must be 1–{MAX_TOKEN_TTL_SECS} seconds, got {ttl}"),
        });
    }
    let token = new_token("omenr_");
    let now = now_ms();
    let expires_at = now + i64::try_from(ttl * 1000).unwrap_or(i64::MAX);
    store
        .insert_enrollment_token(&EnrollmentTokenRow {
            token_hash: hash_token(&token),
            expires_at,
            auto_validate: req.auto_validate,
            note: req.note.clone(),
            created_at: now,
        })
        .await?;
    Ok(EnrollmentToken {
        token,
        expires_at: rfc3339(expires_at),
        auto_validate: req.auto_validate,
    })
}

/// Checks a protocol version against the ones we speak
/// ([`MIN_PROTOCOL_VERSION`] to [`PROTOCOL_VERSION`]).
pub fn check_protocol(mid: u32) -> Result<(), RegistryError> {
    if (MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&mid) {
        return Ok(());
    }
    let (older, newer) = if mid < MIN_PROTOCOL_VERSION {
        ("MID", PROTOCOL_VERSION)
    } else {
        ("instance", mid)
    };
    Err(RegistryError::ProtocolMismatch {
        mid,
        instance: PROTOCOL_VERSION,
        older,
        newer,
    })
}

/// Enrolls a MID with a one-time token.
pub async fn enroll(store: &dyn Store, req: &EnrollRequest) -> Result<MidRow, RegistryError> {
    check_protocol(req.protocol_version)?;
    if !is_valid_name(&req.name) {
        return Err(RegistryError::Invalid {
            field: "name",
            message: format!(
                "`{}` is not a valid MID name (1–64 of A-Z a-z 0-9 . _ -, starting with a letter or digit)",
                req.name
            ),
        });
    }
    check_key_and_secret(&req.public_key, &req.secret)?;
    check_profile(&req.profile)?;
    let row = MidRow {
        id: uuid::Uuid::now_v7().to_string(),
        name: req.name.clone(),
        secret_hash: hash_token(req.secret.expose()),
        public_key: req.public_key.clone(),
        status: MidStatus::ValidationPending,
        status_reason: None,
        version: req.version.chars().take(64).collect(),
        hostname: req.hostname.chars().take(255).collect(),
        protocol_version: req.protocol_version,
        enrolled_at: now_ms(),
        validated_at: None,
        last_seen_at: Some(now_ms()),
        declared_profile: req.profile.clone(),
        admin_profile: None,
        health: None,
        rekey_requested: false,
    };
    Ok(store
        .enroll_mid(&hash_token(req.token.expose()), &row)
        .await?)
}

/// The enrollment answer for a registered MID.
pub fn enroll_response(row: &MidRow) -> EnrollResponse {
    EnrollResponse {
        mid_id: row.id.clone(),
        name: row.name.clone(),
        status: row.status,
    }
}

/// Authenticates a session request's bearer credential `MID_ID.SECRET`.
pub async fn authenticate(store: &dyn Store, bearer: &str) -> Result<MidRow, RegistryError> {
    let (id, secret) = bearer.split_once('.').ok_or(RegistryError::Unauthorized(
        "MID credential must be `Bearer MID_ID.SECRET`",
    ))?;
    let row = store
        .get_mid(MidKey::Id(id))
        .await?
        .ok_or(RegistryError::Unauthorized("unknown MID or wrong secret"))?;
    if !token_matches(secret, &row.secret_hash) {
        return Err(RegistryError::Unauthorized("unknown MID or wrong secret"));
    }
    if row.status == MidStatus::Invalidated {
        return Err(RegistryError::Invalidated);
    }
    Ok(row)
}

/// Checks a MID's public key (base64 X25519) and secret (long enough).
pub fn check_key_and_secret(public_key: &str, secret: &Secret) -> Result<(), RegistryError> {
    let key_ok = STANDARD
        .decode(public_key)
        .map(|k| k.len() == 32)
        .unwrap_or(false);
    if !key_ok {
        return Err(RegistryError::Invalid {
            field: "public_key",
            message: "must be a base64 X25519 public key (32 bytes)".into(),
        });
    }
    if secret.expose().len() < 32 {
        return Err(RegistryError::Invalid {
            field: "secret",
            message: "must be at least 32 characters".into(),
        });
    }
    Ok(())
}

/// Checks a profile: IP ranges parse; names are short.
pub fn check_profile(profile: &MidProfile) -> Result<(), RegistryError> {
    IpRanges::parse(&profile.ip_ranges).map_err(|e| RegistryError::Invalid {
        field: "ip_ranges",
        message: e.to_string(),
    })?;
    for (field, list) in [
        ("capabilities", &profile.capabilities),
        ("applications", &profile.applications),
    ] {
        if list.len() > 64 || list.iter().any(|c| c.is_empty() || c.len() > 100) {
            return Err(RegistryError::Invalid {
                field,
                message: "at most 64 entries of 1–100 characters".into(),
            });
        }
    }
    Ok(())
}

/// The registry row as the API shows it (no secret hash), with its current load.
pub fn mid_info(row: &MidRow, load: Load) -> MidInfo {
    MidInfo {
        id: row.id.clone(),
        name: row.name.clone(),
        status: row.status,
        status_reason: row.status_reason.clone(),
        version: row.version.clone(),
        protocol_version: row.protocol_version,
        hostname: row.hostname.clone(),
        public_key: row.public_key.clone(),
        enrolled_at: rfc3339(row.enrolled_at),
        validated_at: row.validated_at.map(rfc3339),
        last_seen_at: row.last_seen_at.map(rfc3339),
        profile: row.profile(),
        declared_profile: row.declared_profile.clone(),
        health: row.health.clone(),
        rekey_pending: row.rekey_requested,
        ready: load.ready,
        processing: load.processing,
    }
}
