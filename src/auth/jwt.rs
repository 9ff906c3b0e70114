//! Access tokens: HS256 JWTs with `iss`, `aud`, `exp`, `iat` and `sub` (the user id).

use std::time::Duration;

use chrono::Utc;
use jsonwebtoken::{decode, encode, errors::ErrorKind, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    config::AuthConfig,
    error::{AppError, ErrorCode},
};

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: Uuid,
    iss: String,
    aud: String,
    iat: i64,
    exp: i64,
    /// The account's token version at issue; a password change increments it, so
    /// older tokens are refused. Absent in tokens from before versions: 0.
    #[serde(default)]
    ver: i32,
}

/// Who a valid token speaks for, and the account's token version it was issued at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenSubject {
    pub user_id: Uuid,
    pub version: i32,
}

/// An issued token and how long it stays valid.
pub struct IssuedToken {
    pub token: String,
    pub expires_in: Duration,
}

#[derive(Clone)]
pub struct JwtService {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    audience: String,
    ttl: Duration,
}

impl JwtService {
    pub fn new(config: &AuthConfig) -> Self {
        let secret = config.jwt_secret.expose().as_bytes();
        // Only HS256 is accepted: a token claiming `none` or an asymmetric algorithm is
        // rejected before its signature is even considered.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[&config.jwt_issuer]);
        validation.set_audience(&[&config.jwt_audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = config.jwt_leeway_secs;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            issuer: config.jwt_issuer.clone(),
            audience: config.jwt_audience.clone(),
            ttl: config.jwt_ttl,
        }
    }

    pub fn issue(&self, user_id: Uuid, version: i32) -> anyhow::Result<IssuedToken> {
        let now = Utc::now().timestamp();
        let claims = Claims {
            sub: user_id,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            iat: now,
            exp: now + i64::try_from(self.ttl.as_secs())?,
            ver: version,
        };
        let token = encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)?;
        Ok(IssuedToken {
            token,
            expires_in: self.ttl,
        })
    }

    /// The subject of a valid token; a 401 problem for anything else. Whether its
    /// version is still the account's is for the caller, who reads the account.
    pub fn verify(&self, token: &str) -> Result<TokenSubject, AppError> {
        match decode::<Claims>(token, &self.decoding, &self.validation) {
            Ok(data) => Ok(TokenSubject {
                user_id: data.claims.sub,
                version: data.claims.ver,
            }),
            Err(e) if matches!(e.kind(), ErrorKind::ExpiredSignature) => {
                Err(AppError::new(ErrorCode::TokenExpired, "the access token has expired"))
            }
            Err(_) => Err(AppError::unauthorized("the access token is invalid")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn service() -> JwtService {
        JwtService::new(&Config::from_lookup(|_| None).unwrap().auth)
    }

    #[test]
    fn issued_tokens_verify() {
        let jwt = service();
        let user = Uuid::new_v4();
        let issued = jwt.issue(user, 3).unwrap();
        assert_eq!(
            jwt.verify(&issued.token).unwrap(),
            TokenSubject {
                user_id: user,
                version: 3
            }
        );
    }

    #[test]
    fn tokens_from_another_issuer_or_audience_fail() {
        let jwt = service();
        let now = Utc::now().timestamp();
        for (iss, aud) in [("someone-else", "meterplane-api"), ("meterplane", "other-api")] {
            let claims = Claims {
                sub: Uuid::new_v4(),
                iss: iss.into(),
                aud: aud.into(),
                iat: now,
                exp: now + 60,
                ver: 0,
            };
            let token = encode(&Header::new(Algorithm::HS256), &claims, &jwt.encoding).unwrap();
            assert_eq!(jwt.verify(&token).unwrap_err().code(), ErrorCode::Unauthorized);
        }
    }
}
