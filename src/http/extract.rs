//! Request extractors for the two kinds of caller.

use std::{future::Future, net::IpAddr, pin::Pin};

use actix_web::{dev::Payload, http::header, web, FromRequest, HttpRequest};
use serde::{de::DeserializeOwned, Deserialize};
use serde_json::value::RawValue;

use super::state::AppState;
use crate::{
    auth::{Caller, KeyIdentity},
    error::{AppError, AppResult},
    store,
};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T>>>;

fn state(req: &HttpRequest) -> AppResult<AppState> {
    req.app_data::<web::Data<AppState>>()
        .map(|data| data.get_ref().clone())
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("application state is not configured")))
}

fn bearer(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The client's address, as login throttling counts it: the last entry of the
/// configured proxy header (the one the trusted proxy appended; earlier entries are
/// whatever the client sent), else the TCP peer. Without either (never over TCP),
/// the unspecified address, so such requests share one count.
pub fn client_ip(req: &HttpRequest, proxy_header: Option<&str>) -> IpAddr {
    let from_header = proxy_header
        .and_then(|name| req.headers().get(name))
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.rsplit(',').next())
        .and_then(|last| last.trim().parse::<IpAddr>().ok());
    from_header
        .or_else(|| req.peer_addr().map(|peer| peer.ip()))
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
}

/// A person signed in with a bearer JWT whose account still exists.
pub struct AuthUser(pub Caller);

impl FromRequest for AuthUser {
    type Error = AppError;
    type Future = BoxFuture<AppResult<Self>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let token = bearer(req).map(str::to_owned);
        let state = state(req);
        Box::pin(async move {
            let state = state?;
            let token = token.ok_or_else(|| AppError::unauthorized("a bearer access token is required"))?;
            let subject = state.jwt.verify(&token)?;
            let mut conn = state.conn().await?;
            // The account may have been deleted since the token was issued, or its
            // password changed (which retires every token issued before): the row
            // read here anyway says both.
            let user = store::users::find(&mut conn, subject.user_id)
                .await?
                .filter(|user| user.token_version == subject.version)
                .ok_or_else(|| AppError::unauthorized("the access token is invalid"))?;
            Ok(AuthUser(user.caller()))
        })
    }
}

/// The gateway, presenting a project API key as `Authorization: Bearer mp_…` or
/// `X-Api-Key: mp_…`.
pub struct GatewayKey(pub KeyIdentity);

/// The API key a gateway presents: `X-Api-Key`, or `Authorization: Bearer mp_…`.
pub fn presented_key(req: &HttpRequest) -> Option<String> {
    req.headers()
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .or_else(|| bearer(req))
        .map(str::to_owned)
}

impl FromRequest for GatewayKey {
    type Error = AppError;
    type Future = BoxFuture<AppResult<Self>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let secret = presented_key(req);
        let state = state(req);
        Box::pin(async move {
            let state = state?;
            let secret = secret.ok_or_else(|| AppError::unauthorized("an API key is required"))?;
            Ok(GatewayKey(state.keys.resolve(&secret).await?))
        })
    }
}

/// A JSON request body that must be an object. serde's derived `Deserialize` also
/// accepts a struct written as an array (`["Acme"]`), which no client means; this
/// wrapper accepts only maps and streams them into `T`, so unknown-field and type
/// errors keep their usual classification.
pub struct Body<T>(pub T);

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for Body<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectOnly<T>(std::marker::PhantomData<T>);
        impl<'de, T: serde::Deserialize<'de>> serde::de::Visitor<'de> for ObjectOnly<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        deserializer
            .deserialize_map(ObjectOnly(std::marker::PhantomData))
            .map(Body)
    }
}

/// Reads a JSON object into `T`. A whole number written with a fraction (`2607.0`) is
/// an integer to JSON Schema and to clients whose numbers are all floats, so when the
/// first reading fails, whole floats are turned into integers and the object is read
/// once more; if that fails too, the first error is the answer. The common case pays
/// for one parse only.
pub fn object_from_json<T: DeserializeOwned>(text: &str) -> Result<T, serde_json::Error> {
    let first = match serde_json::from_str::<Body<T>>(text) {
        Ok(Body(value)) => return Ok(value),
        Err(e) => e,
    };
    if first.classify() != serde_json::error::Category::Data {
        return Err(first);
    }
    let mut value: serde_json::Value = serde_json::from_str(text)?;
    if !whole_floats_to_integers(&mut value) {
        return Err(first);
    }
    Body::<T>::deserialize(value).map(|Body(v)| v).map_err(|_| first)
}

/// Rewrites every float with no fractional part as an integer; says whether any was.
fn whole_floats_to_integers(value: &mut serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            // Within ±2^53 every whole float is an exact integer.
            let exact = f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_992.0;
            if exact {
                *n = serde_json::Number::from(f as i64);
            }
            exact
        }
        // Every member is rewritten, so no short-circuiting `any`.
        Value::Array(items) => {
            items
                .iter_mut()
                .map(whole_floats_to_integers)
                .filter(|&changed| changed)
                .count()
                > 0
        }
        Value::Object(members) => {
            members
                .values_mut()
                .map(whole_floats_to_integers)
                .filter(|&changed| changed)
                .count()
                > 0
        }
        _ => false,
    }
}

/// The extractor every handler with a JSON body uses: the body as an object of type
/// `T`. Size, content type and syntax are checked by actix's JSON extractor (with the
/// application's `JsonConfig`), the rest by [`object_from_json`].
pub struct JsonBody<T>(pub T);

impl<T> JsonBody<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for JsonBody<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for JsonBody<T> {
    type Error = actix_web::Error;
    type Future = BoxFuture<Result<Self, actix_web::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let raw = web::Json::<Box<RawValue>>::from_request(req, payload);
        Box::pin(async move {
            let raw = raw.await?;
            object_from_json(raw.get())
                .map(JsonBody)
                .map_err(|e| super::rejections::serde_error(&e).into())
        })
    }
}
