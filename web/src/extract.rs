//! The API's extractors: who is calling ([`Caller`], [`Admin`]) and a JSON
//! body with the API's error answers ([`Body`]).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use crate::app::{ControlPlane, hash_token};
use crate::error::ApiError;
use crate::store::Scope;

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Caller {
    /// An admin token.
    Admin {
        /// The token's label.
        label: String,
    },
    /// A tenant's token.
    Tenant {
        /// Tenant id.
        id: i64,
        /// Tenant name.
        name: String,
        /// The token's label.
        label: String,
    },
}

impl Caller {
    pub(crate) fn scope(&self) -> Scope {
        match self {
            Caller::Admin { .. } => Scope::All,
            Caller::Tenant { id, .. } => Scope::Tenant(*id),
        }
    }

    pub(crate) fn who(&self) -> String {
        match self {
            Caller::Admin { label } => format!("admin:{label}"),
            Caller::Tenant { name, label, .. } => format!("{name}:{label}"),
        }
    }
}

impl FromRequestParts<Arc<ControlPlane>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        cp: &Arc<ControlPlane>,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer <token>"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| {
                let (scheme, token) = h.split_once(' ')?;
                scheme
                    .eq_ignore_ascii_case("bearer")
                    .then_some(token.trim())
            })
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::unauthorized("malformed Authorization header; expected Bearer <token>")
            })?;
        let owner = cp
            .store
            .lookup_token(&hash_token(token))?
            .ok_or_else(|| ApiError::unauthorized("unknown or revoked token"))?;
        Ok(match owner.tenant {
            None => Caller::Admin { label: owner.label },
            Some((id, name)) => Caller::Tenant {
                id,
                name,
                label: owner.label,
            },
        })
    }
}

/// An admin caller; tenants get 403.
#[derive(Debug)]
pub(crate) struct Admin;

impl FromRequestParts<Arc<ControlPlane>> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        cp: &Arc<ControlPlane>,
    ) -> Result<Self, Self::Rejection> {
        match Caller::from_request_parts(parts, cp).await? {
            Caller::Admin { .. } => Ok(Admin),
            Caller::Tenant { .. } => Err(ApiError::forbidden("this route needs the admin token")),
        }
    }
}

/// A JSON body; errors are `invalid_request` naming the field (serde's
/// message), an empty body reads as `{}`.
#[derive(Debug)]
pub(crate) struct Body<T>(pub(crate) T);

impl<T: DeserializeOwned> FromRequest<Arc<ControlPlane>> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, cp: &Arc<ControlPlane>) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, cp).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::too_large(e.body_text())
            } else {
                ApiError::bad_request(e.body_text())
            }
        })?;
        let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        serde_json::from_slice(bytes)
            .map(Body)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
    }
}
