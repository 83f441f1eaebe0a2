//! Signed identities (`AUTH_ISSUER`): who a buyer is, as the site's OpenID Connect provider
//! says, for the routes that name a user (`POST /queue/tokens` and the balance routes).
//!
//! A request carries `Authorization: Bearer <JWT>` (an ID token or a JWT access token). It is
//! verified here, at the edge, with `jsonwebtoken`, and the handler gets a verified
//! [`UserId`] and nothing else: the domain never sees a credential.
//!
//! # Keys
//! The signing keys come from the issuer's JWKS (its discovery document's `jwks_uri`, or
//! `AUTH_JWKS_URL`). They are parsed once into `DecodingKey`s, each with its algorithm fixed by
//! the key (RS256 for RSA, ES256 for P-256, EdDSA for Ed25519, or the key's own `alg` when it
//! names one of those): the token's `alg` header only has to agree with it, so neither `none`
//! nor an HMAC keyed with a public key can ever verify. Keys of other kinds, or meant for
//! encryption, are skipped.
//!
//! One task ([`Identity::run_refresher`]) owns the HTTP client and fetches the keys: at start,
//! every `AUTH_JWKS_REFRESH_SECS`, and when a request meets a `kid` it does not know (at most
//! once per [`MIN_REFRESH_GAP`], so a stream of forged `kid`s cannot hammer the provider). A
//! request that triggered a fetch waits for it (at most [`FETCH_TIMEOUT`]); every other
//! request reads the cached set, a pointer copy under a read lock, and verifies with no I/O.
//! A fetch that fails keeps the keys already cached: an outage of the provider changes nothing
//! for tokens signed with a known key. With no key at all (a cold start while the provider is
//! down) the routes that need identity answer 503 `UNAVAILABLE`, and the rest are served.
//!
//! # Verified tokens
//! A buyer's page sends the same token with every call, so a token that verified is kept,
//! keyed by its SHA-256, with its user, its `exp` and `nbf` and the key that verified it: the
//! next request with the same token checks the times against the clock and that the key is
//! still the one published (a refreshed key set makes every kept token verify again), and skips
//! the signature. At most [`VERIFIED_CAPACITY`] are kept; past that the set starts over.
//!
//! # Layout
//! - [`IdentityConfig`]: the settings.
//! - [`Identity`]: the verifier and its key cache; [`Identity::verify`].
//! - [`IdentityError`]: why a credential was refused.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use domain::ids::UserId;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use tokio::sync::{watch, Notify};

use crate::wire::canonical_uuid;

/// The least time between two fetches of the keys asked for by an unknown `kid` (or by a
/// request that found no key at all).
pub const MIN_REFRESH_GAP: Duration = Duration::from_secs(10);

/// The longest a fetch of the keys may take (discovery document and JWKS together).
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(4);

/// Clock skew allowed on `exp` and `nbf`.
pub const LEEWAY_SECS: u64 = 60;

/// Most verified tokens kept (about 100 bytes each).
pub const VERIFIED_CAPACITY: usize = 100_000;

/// The largest JWKS or discovery document read.
const MAX_DOCUMENT: usize = 256 * 1024;

/// The settings of signed identities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityConfig {
    /// `AUTH_ISSUER`: the `iss` tokens must carry, and where the discovery document is.
    pub issuer: String,
    /// `AUTH_AUDIENCE`: `aud` must contain one of these.
    pub audiences: Vec<String>,
    /// `AUTH_JWKS_URL`: the keys, instead of the discovery document's `jwks_uri`.
    pub jwks_url: Option<String>,
    /// `AUTH_JWKS_REFRESH_SECS`: how often the keys are fetched again.
    pub refresh_every: Duration,
    /// `AUTH_USER_CLAIM`: the claim holding the user's UUID.
    pub user_claim: String,
    /// `AUTH_PAGE_CLIENT_ID`: the public client the buyer's page signs in as.
    pub page_client_id: Option<String>,
}

impl IdentityConfig {
    /// Identity for `issuer` and `audiences`, with the contract's defaults for the rest.
    #[must_use]
    pub fn new(issuer: impl Into<String>, audiences: Vec<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audiences,
            jwks_url: None,
            refresh_every: Duration::from_secs(300),
            user_claim: "sub".to_owned(),
            page_client_id: None,
        }
    }

    /// Where the discovery document is.
    #[must_use]
    pub fn discovery_url(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.issuer.trim_end_matches('/'))
    }
}

/// Why a credential was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// No `Authorization: Bearer` header (401 `IDENTITY_MISSING`).
    #[error("no signed identity")]
    Missing,
    /// Not a JWT this service trusts: malformed, a bad signature, an unknown key, the wrong
    /// algorithm, issuer or audience, outside its time, or without a UUID in the user claim
    /// (401 `IDENTITY_INVALID`). The text is safe to answer.
    #[error("{0}")]
    Invalid(&'static str),
    /// No signing key could be fetched yet (503 `UNAVAILABLE`): retry after the seconds given.
    #[error("the identity provider's keys cannot be fetched")]
    Unavailable {
        /// Seconds until the next fetch may succeed.
        retry_after: u64,
    },
}

/// A parsed signing key and the only validation it may be used with.
struct Key {
    key: DecodingKey,
    validation: Validation,
}

/// The keys of one fetch, by `kid`.
#[derive(Default)]
struct KeySet {
    by_kid: HashMap<String, Arc<Key>>,
    /// The key of a JWKS of one key without a `kid` (some providers publish one like that).
    lone: Option<Arc<Key>>,
}

impl KeySet {
    fn is_empty(&self) -> bool {
        self.by_kid.is_empty() && self.lone.is_none()
    }

    fn find(&self, kid: Option<&str>) -> Option<Arc<Key>> {
        match kid {
            Some(kid) => self.by_kid.get(kid).cloned(),
            None if self.by_kid.len() == 1 && self.lone.is_none() => self.by_kid.values().next().cloned(),
            None => self.lone.clone(),
        }
    }
}

/// When fetches happened, for the rate limit of fetches asked for by requests.
#[derive(Debug, Default)]
struct Fetches {
    /// When the last fetch started.
    last_started: Option<Instant>,
    /// Whether one is running now.
    running: bool,
}

struct Inner {
    config: IdentityConfig,
    /// Origins the buyer's page talks to when it signs in: the issuer's, and the token
    /// endpoint's once the discovery document named it (for the page's `connect-src`).
    page_origins: RwLock<Vec<String>>,
    keys: RwLock<Arc<KeySet>>,
    /// Tokens that verified, by the SHA-256 of the token (see the module docs).
    verified: RwLock<HashMap<[u8; 32], Verified>>,
    fetches: Mutex<Fetches>,
    /// Wakes the refresher for a fetch out of schedule.
    wake: Notify,
    /// Counts finished fetches (successful or not); requests waiting for one watch it.
    done: watch::Sender<u64>,
}

/// A token that verified: its user, its time bounds and the key that verified it.
struct Verified {
    user: UserId,
    exp: i64,
    nbf: Option<i64>,
    key: Arc<Key>,
}

impl Verified {
    /// Whether it still verifies at `now` (Unix seconds) with `key`, the key the set now
    /// publishes under its `kid`: within its times (with the leeway) and signed by that key.
    fn holds(&self, now: i64, key: &Arc<Key>) -> bool {
        let leeway = i64::try_from(LEEWAY_SECS).unwrap_or(0);
        Arc::ptr_eq(&self.key, key) && now <= self.exp + leeway && self.nbf.is_none_or(|nbf| now >= nbf - leeway)
    }
}

/// The verifier of signed identities and its cache of keys. Cloning is cheap (one `Arc`).
#[derive(Clone)]
pub struct Identity(Arc<Inner>);

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys = self.0.keys.read().map(|k| k.by_kid.len() + usize::from(k.lone.is_some())).unwrap_or(0);
        f.debug_struct("Identity").field("config", &self.0.config).field("keys", &keys).finish()
    }
}

/// The claims read from a verified token: only the user claim; `jsonwebtoken` checks `exp`,
/// `nbf`, `iss` and `aud` itself.
type Claims = HashMap<String, serde_json::Value>;

impl Identity {
    /// A verifier with no key yet: [`Identity::run_refresher`] fetches them.
    #[must_use]
    pub fn new(config: IdentityConfig) -> Self {
        let (done, _) = watch::channel(0);
        let page_origins = RwLock::new(origin_of(&config.issuer).into_iter().collect());
        Self(Arc::new(Inner {
            config,
            page_origins,
            keys: RwLock::new(Arc::new(KeySet::default())),
            verified: RwLock::new(HashMap::new()),
            fetches: Mutex::new(Fetches::default()),
            wake: Notify::new(),
            done,
        }))
    }

    /// The settings.
    #[must_use]
    pub fn config(&self) -> &IdentityConfig {
        &self.0.config
    }

    /// The origins the buyer's page fetches from to sign in (the issuer's, and its token
    /// endpoint's once known), serialised for a Content-Security-Policy.
    #[must_use]
    pub fn page_origins(&self) -> Vec<String> {
        self.0.page_origins.read().map(|o| o.clone()).unwrap_or_default()
    }

    /// Verifies a bearer JWT and returns its user.
    ///
    /// # Errors
    /// [`IdentityError::Invalid`] for any token this service does not trust;
    /// [`IdentityError::Unavailable`] when no key could be fetched yet.
    pub async fn verify(&self, token: &str) -> Result<UserId, IdentityError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| IdentityError::Invalid("not a signed JWT"))?;
        let kid = header.kid.as_deref();
        let key = match self.cached(kid) {
            Found::Key(key) => key,
            Found::Unknown | Found::NoKeys => {
                // A rotated key the cache has not seen, or no key at all: fetch again if allowed.
                if self.ask_fetch() {
                    self.wait_for_fetch().await;
                }
                match self.cached(kid) {
                    Found::Key(key) => key,
                    Found::Unknown => {
                        return Err(IdentityError::Invalid("signed with a key the issuer does not publish"))
                    }
                    Found::NoKeys => return Err(IdentityError::Unavailable { retry_after: self.retry_after() }),
                }
            }
        };
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        if let Ok(verified) = self.0.verified.read() {
            if let Some(v) = verified.get(&digest).filter(|v| v.holds(now, &key)) {
                return Ok(v.user);
            }
        }
        let (user, claims) = self.check(token, &key)?;
        let seconds = |name: &str| claims.get(name).and_then(serde_json::Value::as_i64);
        let mut dropped = None;
        if let (Some(exp), Ok(mut verified)) = (seconds("exp"), self.0.verified.write()) {
            if verified.len() >= VERIFIED_CAPACITY {
                // Taken out under the lock, freed after it: requests do not wait for the drop.
                dropped = Some(std::mem::take(&mut *verified));
            }
            verified.insert(digest, Verified { user, exp, nbf: seconds("nbf"), key });
        }
        drop(dropped);
        Ok(user)
    }

    /// Verifies `token` with `key` (no I/O); its user and claims.
    fn check(&self, token: &str, key: &Key) -> Result<(UserId, Claims), IdentityError> {
        let data = jsonwebtoken::decode::<Claims>(token, &key.key, &key.validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            IdentityError::Invalid(match e.kind() {
                K::ExpiredSignature => "the token has expired",
                K::ImmatureSignature => "the token is not valid yet",
                K::InvalidIssuer => "the token is from another issuer",
                K::InvalidAudience => "the token is for another audience",
                K::InvalidSignature => "the token's signature does not verify",
                K::InvalidAlgorithm | K::InvalidAlgorithmName => "the token's algorithm is not its key's",
                K::MissingRequiredClaim(_) => "the token lacks exp, iss or aud",
                _ => "the token cannot be verified",
            })
        })?;
        let user = data
            .claims
            .get(&self.0.config.user_claim)
            .and_then(serde_json::Value::as_str)
            .and_then(|s| canonical_uuid(s).or_else(|| uuid::Uuid::parse_str(s).ok()))
            .ok_or(IdentityError::Invalid("the token's user claim is not a UUID"))?;
        Ok((UserId::from_uuid(user), data.claims))
    }

    fn no_keys(&self) -> bool {
        self.0.keys.read().map(|k| k.is_empty()).unwrap_or(true)
    }

    fn cached(&self, kid: Option<&str>) -> Found {
        let Ok(keys) = self.0.keys.read() else { return Found::NoKeys };
        if keys.is_empty() {
            return Found::NoKeys;
        }
        keys.find(kid).map_or(Found::Unknown, Found::Key)
    }

    /// Asks the refresher for a fetch unless one ran less than [`MIN_REFRESH_GAP`] ago; true
    /// when a fetch is running or was asked for (worth waiting for).
    fn ask_fetch(&self) -> bool {
        let Ok(mut fetches) = self.0.fetches.lock() else { return false };
        if fetches.running {
            return true;
        }
        if fetches.last_started.is_some_and(|at| at.elapsed() < MIN_REFRESH_GAP) {
            return false;
        }
        // Counted as started now, so concurrent requests ask once.
        fetches.last_started = Some(Instant::now());
        fetches.running = true;
        self.0.wake.notify_one();
        true
    }

    /// Waits for the running or asked-for fetch to end, at most [`FETCH_TIMEOUT`] and a bit.
    async fn wait_for_fetch(&self) {
        let mut done = self.0.done.subscribe();
        let running = self.0.fetches.lock().map(|f| f.running).unwrap_or(false);
        if !running {
            return;
        }
        let _ = tokio::time::timeout(FETCH_TIMEOUT + Duration::from_millis(500), done.changed()).await;
    }

    /// Seconds until a fetch may be tried again.
    fn retry_after(&self) -> u64 {
        let since = self.0.fetches.lock().ok().and_then(|f| f.last_started).map(|at| at.elapsed());
        since.map_or(1, |s| MIN_REFRESH_GAP.saturating_sub(s).as_secs().max(1))
    }

    /// Fetches the keys now, and then every `AUTH_JWKS_REFRESH_SECS` or when a request asks,
    /// until `stop` turns true. Run it once per process (the app spawns it on its runtime).
    pub async fn run_refresher(self, mut stop: watch::Receiver<bool>) {
        let client = match reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .connect_timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
        {
            Ok(client) => client,
            Err(e) => {
                tracing::error!(error = %e, "cannot build the HTTP client of the identity provider's keys");
                return;
            }
        };
        let mut failing = false;
        loop {
            if let Ok(mut fetches) = self.0.fetches.lock() {
                fetches.running = true;
                fetches.last_started = Some(Instant::now());
            }
            let fetched = tokio::time::timeout(FETCH_TIMEOUT, self.fetch(&client)).await;
            let fetched = fetched.unwrap_or_else(|_| Err("the provider did not answer in time".to_owned()));
            let next = match fetched {
                Ok(keys) => {
                    let count = keys.by_kid.len() + usize::from(keys.lone.is_some());
                    if failing || self.no_keys() {
                        tracing::info!(keys = count, "identity provider's signing keys fetched");
                    } else {
                        tracing::debug!(keys = count, "identity provider's signing keys refreshed");
                    }
                    failing = false;
                    if let Ok(mut held) = self.0.keys.write() {
                        *held = Arc::new(keys);
                    }
                    self.0.config.refresh_every
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, issuer = %self.0.config.issuer, "cannot fetch the identity provider's signing keys; keeping the cached ones (check AUTH_ISSUER / AUTH_JWKS_URL)");
                    }
                    failing = true;
                    // Sooner than the schedule, but never more often than the request-driven gap.
                    MIN_REFRESH_GAP.min(self.0.config.refresh_every)
                }
            };
            if let Ok(mut fetches) = self.0.fetches.lock() {
                fetches.running = false;
            }
            self.0.done.send_modify(|n| *n = n.wrapping_add(1));
            tokio::select! {
                () = tokio::time::sleep(next) => {}
                () = self.0.wake.notified() => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// One fetch: the discovery document (unless `AUTH_JWKS_URL` is set), then the JWKS.
    async fn fetch(&self, client: &reqwest::Client) -> Result<KeySet, String> {
        let config = &self.0.config;
        let jwks_url = match &config.jwks_url {
            Some(url) => url.clone(),
            None => {
                #[derive(Deserialize)]
                struct Discovery {
                    issuer: String,
                    jwks_uri: String,
                    token_endpoint: Option<String>,
                }
                let doc: Discovery = get_json(client, &config.discovery_url()).await?;
                if doc.issuer != config.issuer {
                    return Err(format!(
                        "the discovery document names the issuer {:?}, not AUTH_ISSUER {:?}",
                        doc.issuer, config.issuer
                    ));
                }
                let origins: Vec<String> = [Some(config.issuer.as_str()), doc.token_endpoint.as_deref()]
                    .into_iter()
                    .flatten()
                    .filter_map(origin_of)
                    .fold(Vec::new(), |mut all, o| {
                        if !all.contains(&o) {
                            all.push(o);
                        }
                        all
                    });
                if let Ok(mut held) = self.0.page_origins.write() {
                    *held = origins;
                }
                doc.jwks_uri
            }
        };
        let set: JwkSet = get_json(client, &jwks_url).await?;
        Ok(self.parse(&set))
    }

    /// The usable signing keys of a JWKS.
    fn parse(&self, set: &JwkSet) -> KeySet {
        let mut keys = KeySet::default();
        for jwk in &set.keys {
            let Some(alg) = algorithm_of(jwk) else { continue };
            let Ok(key) = DecodingKey::from_jwk(jwk) else { continue };
            let mut validation = Validation::new(alg);
            validation.leeway = LEEWAY_SECS;
            validation.validate_exp = true;
            validation.validate_nbf = true;
            validation.set_required_spec_claims(&["exp", "iss", "aud"]);
            validation.set_issuer(&[&self.0.config.issuer]);
            validation.set_audience(&self.0.config.audiences);
            let key = Arc::new(Key { key, validation });
            match &jwk.common.key_id {
                Some(kid) => {
                    keys.by_kid.insert(kid.clone(), key);
                }
                None if set.keys.len() == 1 => keys.lone = Some(key),
                None => {}
            }
        }
        keys
    }
}

enum Found {
    Key(Arc<Key>),
    Unknown,
    NoKeys,
}

/// The one algorithm a JWK may verify: fixed by the key's type and curve, and by its `alg`
/// when it names one; `None` for keys this service does not accept (HMAC, encryption keys,
/// other curves or algorithms).
fn algorithm_of(jwk: &Jwk) -> Option<Algorithm> {
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))) {
        return None;
    }
    let by_type = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => Algorithm::ES256,
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => Algorithm::EdDSA,
        _ => return None,
    };
    match jwk.common.key_algorithm {
        None => Some(by_type),
        Some(KeyAlgorithm::RS256) if by_type == Algorithm::RS256 => Some(by_type),
        Some(KeyAlgorithm::ES256) if by_type == Algorithm::ES256 => Some(by_type),
        Some(KeyAlgorithm::EdDSA) if by_type == Algorithm::EdDSA => Some(by_type),
        Some(_) => None,
    }
}

/// `scheme://host[:port]` of an http(s) URL.
fn origin_of(url: &str) -> Option<String> {
    let url = url::Url::parse(url).ok()?;
    matches!(url.scheme(), "http" | "https").then(|| url.origin().ascii_serialization())
}

async fn get_json<T: serde::de::DeserializeOwned>(client: &reqwest::Client, url: &str) -> Result<T, String> {
    let res =
        client.get(url).header("accept", "application/json").send().await.map_err(|e| format!("GET {url}: {e}"))?;
    if !res.status().is_success() {
        return Err(format!("GET {url}: HTTP {}", res.status()));
    }
    if res.content_length().is_some_and(|n| n > MAX_DOCUMENT as u64) {
        return Err(format!("GET {url}: the document is over {MAX_DOCUMENT} bytes"));
    }
    let body = res.bytes().await.map_err(|e| format!("GET {url}: {e}"))?;
    if body.len() > MAX_DOCUMENT {
        return Err(format!("GET {url}: the document is over {MAX_DOCUMENT} bytes"));
    }
    serde_json::from_slice(&body).map_err(|e| format!("GET {url}: not the JSON expected: {e}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use super::*;

    fn jwk(json: serde_json::Value) -> Jwk {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn the_key_fixes_the_algorithm_and_hmac_or_encryption_keys_are_skipped() {
        let rsa = serde_json::json!({"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "r"});
        assert_eq!(algorithm_of(&jwk(rsa.clone())), Some(Algorithm::RS256));
        let mut with_alg = rsa.clone();
        with_alg["alg"] = "RS256".into();
        assert_eq!(algorithm_of(&jwk(with_alg)), Some(Algorithm::RS256));
        let mut other_alg = rsa.clone();
        other_alg["alg"] = "PS256".into();
        assert_eq!(algorithm_of(&jwk(other_alg)), None, "only RS256 for RSA");
        let mut enc = rsa;
        enc["use"] = "enc".into();
        assert_eq!(algorithm_of(&jwk(enc)), None);
        let hmac = serde_json::json!({"kty": "oct", "k": "c2VjcmV0", "kid": "h"});
        assert_eq!(algorithm_of(&jwk(hmac)), None);
        let ec = serde_json::json!({"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"});
        assert_eq!(algorithm_of(&jwk(ec)), Some(Algorithm::ES256));
        let p384 = serde_json::json!({"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA"});
        assert_eq!(algorithm_of(&jwk(p384)), None);
        let ed = serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": "AA"});
        assert_eq!(algorithm_of(&jwk(ed)), Some(Algorithm::EdDSA));
    }

    #[test]
    fn the_discovery_document_is_under_the_issuer() {
        let c = IdentityConfig::new("https://id.example.com/realms/shop/", vec!["concert".into()]);
        assert_eq!(c.discovery_url(), "https://id.example.com/realms/shop/.well-known/openid-configuration");
    }
}
