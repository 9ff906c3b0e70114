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

    pub fn issue(&self, user_id: Uuid) -> anyhow::Result<IssuedToken> {
        let now = Utc::now().timestamp();
        let claims = Claims {
            sub: user_id,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            iat: now,
            exp: now + i64::try_from(self.ttl.as_secs())?,
        };
        let token = encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)?;
        Ok(IssuedToken {
            token,
            expires_in: self.ttl,
        })
    }

    /// The user id of a valid token; a 401 problem for anything else.
    pub fn verify(&self, token: &str) -> Result<Uuid, AppError> {
        match decode::<Claims>(token, &self.decoding, &self.validation) {
            Ok(data) => Ok(data.claims.sub),
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
        let issued = jwt.issue(user).unwrap();
        assert_eq!(jwt.verify(&issued.token).unwrap(), user);
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
            };
            let token = encode(&Header::new(Algorithm::HS256), &claims, &jwt.encoding).unwrap();
            assert_eq!(jwt.verify(&token).unwrap_err().code(), ErrorCode::Unauthorized);
        }
    }
}
