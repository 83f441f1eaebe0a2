//! Signed identities (`AUTH_ISSUER`) at the HTTP contract: every route that names a user, with
//! tokens minted here from keys this test controls (ES256, EdDSA, RS256), served as a JWKS by
//! a small issuer on a loopback port. The happy path and key rotation against a real provider
//! are in the top-level `tests/identity.rs`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation must fail the test"
)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use adapters_http::{ApiState, Identity, IdentityConfig};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use common::*;
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, Jwk, KeyAlgorithm, OctetKeyPairParameters, OctetKeyPairType,
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tokio::sync::watch;
use uuid::Uuid;

const AUDIENCE: &str = "concert-test";

// ---- a test issuer ----------------------------------------------------------------------------

/// A private key made by `openssl`, its public JWK and its `kid`.
#[derive(Clone)]
struct TestKey {
    alg: Algorithm,
    kid: String,
    encoding: EncodingKey,
    jwk: Jwk,
    public_pem: String,
}

fn openssl(args: &[&str], input: Option<&[u8]>) -> Vec<u8> {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl is installed");
    if let Some(input) = input {
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "openssl {args:?} failed");
    out.stdout
}

impl TestKey {
    fn new(alg: Algorithm) -> Self {
        let kid = Uuid::new_v4().to_string();
        let gen: &[&str] = match alg {
            Algorithm::ES256 => &["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
            Algorithm::EdDSA => &["genpkey", "-algorithm", "ED25519"],
            Algorithm::RS256 => &["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
            other => panic!("no test key for {other:?}"),
        };
        let pem = openssl(gen, None);
        let public_pem = String::from_utf8(openssl(&["pkey", "-pubout"], Some(&pem))).unwrap();
        let (encoding, mut jwk) = match alg {
            Algorithm::ES256 => {
                let key = EncodingKey::from_ec_pem(&pem).unwrap();
                let jwk = Jwk::from_encoding_key(&key, alg).unwrap();
                (key, jwk)
            }
            Algorithm::RS256 => {
                let key = EncodingKey::from_rsa_pem(&pem).unwrap();
                let jwk = Jwk::from_encoding_key(&key, alg).unwrap();
                (key, jwk)
            }
            _ => {
                // The raw public key is the last 32 bytes of its DER (SubjectPublicKeyInfo).
                let der = openssl(&["pkey", "-pubout", "-outform", "DER"], Some(&pem));
                let x = URL_SAFE_NO_PAD.encode(&der[der.len() - 32..]);
                let jwk = Jwk {
                    common: CommonParameters { key_algorithm: Some(KeyAlgorithm::EdDSA), ..Default::default() },
                    algorithm: AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
                        key_type: OctetKeyPairType::OctetKeyPair,
                        curve: EllipticCurve::Ed25519,
                        x,
                    }),
                };
                (EncodingKey::from_ed_pem(&pem).unwrap(), jwk)
            }
        };
        jwk.common.key_id = Some(kid.clone());
        Self { alg, kid, encoding, jwk, public_pem }
    }

    fn header(&self) -> Header {
        Header { kid: Some(self.kid.clone()), ..Header::new(self.alg) }
    }

    fn sign(&self, claims: &Value) -> String {
        jsonwebtoken::encode(&self.header(), claims, &self.encoding).unwrap()
    }
}

#[derive(Default)]
struct IssuerState {
    jwks: Value,
    down: bool,
}

/// Serves `/.well-known/openid-configuration` and `/jwks` on a loopback port (HTTP/1.1, one
/// request per connection), counting the JWKS fetches; answers 503 while `down`.
struct TestIssuer {
    url: String,
    state: Arc<Mutex<IssuerState>>,
    jwks_hits: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl TestIssuer {
    fn start(keys: &[&TestKey]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let issuer = Self {
            url: url.clone(),
            state: Arc::new(Mutex::new(IssuerState::default())),
            jwks_hits: Arc::new(AtomicUsize::new(0)),
            stop: Arc::new(AtomicBool::new(false)),
        };
        issuer.publish(keys);
        let (state, hits, stop) = (issuer.state.clone(), issuer.jwks_hits.clone(), issuer.stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop.load(Ordering::Acquire) {
                    return;
                }
                if let Ok(stream) = stream {
                    answer(stream, &url, &state, &hits);
                }
            }
        });
        issuer
    }

    fn publish(&self, keys: &[&TestKey]) {
        self.state.lock().unwrap().jwks = json!({ "keys": keys.iter().map(|k| &k.jwk).collect::<Vec<_>>() });
    }

    fn set_down(&self, down: bool) {
        self.state.lock().unwrap().down = down;
    }

    fn hits(&self) -> usize {
        self.jwks_hits.load(Ordering::Acquire)
    }

    fn config(&self) -> IdentityConfig {
        IdentityConfig::new(self.url.clone(), vec![AUDIENCE.to_owned()])
    }
}

impl Drop for TestIssuer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Wakes the accept loop so the thread sees the flag.
        let _ = TcpStream::connect(self.url.trim_start_matches("http://"));
    }
}

fn answer(mut stream: TcpStream, url: &str, state: &Mutex<IssuerState>, hits: &AtomicUsize) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    // Skip the headers.
    let mut header = String::new();
    while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
        header.clear();
    }
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let (status, body) = {
        let state = state.lock().unwrap();
        if state.down {
            ("503 Service Unavailable", "{}".to_owned())
        } else if path == "/.well-known/openid-configuration" {
            let doc = json!({
                "issuer": url,
                "jwks_uri": format!("{url}/jwks"),
                "authorization_endpoint": format!("{url}/auth"),
                "token_endpoint": format!("{url}/token"),
            });
            ("200 OK", doc.to_string())
        } else if path == "/jwks" {
            hits.fetch_add(1, Ordering::AcqRel);
            ("200 OK", state.jwks.to_string())
        } else {
            ("404 Not Found", "{}".to_owned())
        }
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
}

// ---- the service under test ------------------------------------------------------------------

fn now() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()).unwrap()
}

fn claims(issuer: &TestIssuer, user: Uuid) -> Value {
    json!({ "iss": issuer.url, "aud": AUDIENCE, "sub": user.to_string(), "iat": now(), "exp": now() + 300 })
}

/// A state with identity on, its refresher running until the returned sender drops, and the
/// first fetch of the keys done (when the issuer is up).
async fn identity_state(world: &World, issuer: &TestIssuer) -> (ApiState, watch::Sender<bool>) {
    let identity = Identity::new(issuer.config());
    let (stop, rx) = watch::channel(false);
    actix_web::rt::spawn(identity.clone().run_refresher(rx));
    let hits = issuer.hits();
    for _ in 0..100 {
        if issuer.hits() > hits {
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    // The fetch is counted when served; give the refresher a moment to store the keys.
    actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    (world.builder().identity(Some(identity)).build(), stop)
}

fn signed(req: actix_web::test::TestRequest, jwt: &str) -> actix_web::test::TestRequest {
    req.insert_header(bearer(jwt))
}

/// Makes one request afresh (a `TestRequest` is consumed when sent).
type MakeRequest = Box<dyn Fn() -> actix_web::test::TestRequest>;

/// The four routes that name a user, for `user`, as requests to send with a credential.
fn routes(user: Uuid) -> Vec<(&'static str, MakeRequest)> {
    vec![
        ("issue", Box::new(move || post("/queue/tokens").set_json(json!({ "userId": user })))),
        ("balance", Box::new(move || get(&format!("/users/{user}/balance")))),
        ("history", Box::new(move || get(&format!("/users/{user}/balance/history")))),
        ("charge", Box::new(move || charge_req(user, 1000, None))),
    ]
}

// ---- tests -----------------------------------------------------------------------------------

#[actix_web::test]
async fn with_the_right_identity_every_route_answers_as_before_for_each_kind_of_key() {
    let world = World::new();
    let keys = [TestKey::new(Algorithm::ES256), TestKey::new(Algorithm::EdDSA), TestKey::new(Algorithm::RS256)];
    let issuer = TestIssuer::start(&keys.iter().collect::<Vec<_>>());
    let (state, _stop) = identity_state(&world, &issuer).await;
    let app = app(state).await;
    for key in &keys {
        let user = Uuid::new_v4();
        let jwt = key.sign(&claims(&issuer, user));
        let res = call(&app, signed(charge_req(user, 5000, Some("k1")), &jwt)).await;
        assert_eq!((res.status, res.body["balance"].as_i64()), (200, Some(5000)), "{:?}: {res:?}", key.alg);
        let res = call(&app, signed(get(&format!("/users/{user}/balance")), &jwt)).await;
        assert_eq!(res.body, json!({ "userId": user, "balance": 5000 }), "{:?}", key.alg);
        let res = call(&app, signed(get(&format!("/users/{user}/balance/history")), &jwt)).await;
        assert_eq!(res.body["entries"].as_array().map(Vec::len), Some(1), "{res:?}");
        // userId may be left out: the token's user takes the place; naming it is the same place.
        let res = call(&app, signed(post("/queue/tokens").set_json(json!({})), &jwt)).await;
        assert_eq!(res.status, 201, "{:?}: {res:?}", key.alg);
        let token = res.body["token"].as_str().unwrap().to_owned();
        let res = call(&app, signed(post("/queue/tokens").set_json(json!({ "userId": user })), &jwt)).await;
        assert_eq!((res.status, res.body["token"].as_str()), (200, Some(token.as_str())));
        // Routes that take a queue token take it as before.
        let res = call(&app, get("/queue/token").insert_header(bearer(&token))).await;
        assert_eq!(res.status, 200, "{res:?}");
        assert_eq!(res.body["userId"], json!(user));
    }
}

#[actix_web::test]
async fn without_a_signed_identity_every_route_is_401_identity_missing() {
    let world = World::new();
    let key = TestKey::new(Algorithm::ES256);
    let issuer = TestIssuer::start(&[&key]);
    let (state, _stop) = identity_state(&world, &issuer).await;
    let app = app(state).await;
    let user = Uuid::new_v4();
    for (name, req) in routes(user) {
        for req in [req(), req().insert_header(("Authorization", "Basic dXNlcjpwdw=="))] {
            let res = call(&app, req).await;
            assert_problem(&res, 401, "IDENTITY_MISSING");
            assert_eq!(res.header("www-authenticate"), Some(r#"Bearer realm="identity""#), "{name}");
        }
    }
    assert_eq!(balance_of(&world, user), 0, "nothing was charged");
    assert!(world.ticketing.issue_token(domain::ids::UserId::from_uuid(user)).unwrap().created, "no token was issued");
}

/// The user's balance, read past the HTTP layer.
fn balance_of(world: &World, user: Uuid) -> i64 {
    world.ticketing.balance(domain::ids::UserId::from_uuid(user)).unwrap().get()
}

#[actix_web::test]
async fn tokens_that_do_not_verify_are_401_identity_invalid_on_every_route() {
    let world = World::new();
    let rsa = TestKey::new(Algorithm::RS256);
    let es = TestKey::new(Algorithm::ES256);
    let unpublished = TestKey::new(Algorithm::ES256);
    let issuer = TestIssuer::start(&[&rsa, &es]);
    let (state, _stop) = identity_state(&world, &issuer).await;
    let app = app(state).await;
    let user = Uuid::new_v4();
    let good = claims(&issuer, user);
    let with = |change: &dyn Fn(&mut Value)| {
        let mut c = good.clone();
        change(&mut c);
        c
    };
    let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());

    let tampered = {
        let jwt = es.sign(&good);
        let mut parts: Vec<String> = jwt.split('.').map(str::to_owned).collect();
        parts[1] = b64(&with(&|c| c["sub"] = json!(Uuid::new_v4().to_string())));
        parts.join(".")
    };
    let alg_none = format!("{}.{}.", b64(&json!({ "alg": "none", "kid": es.kid })), b64(&good));
    let hs256_with_public_key = {
        let header = Header { kid: Some(rsa.kid.clone()), ..Header::new(Algorithm::HS256) };
        jsonwebtoken::encode(&header, &good, &EncodingKey::from_secret(rsa.public_pem.as_bytes())).unwrap()
    };
    let hs256_with_jwk_modulus = {
        let header = Header { kid: Some(rsa.kid.clone()), ..Header::new(Algorithm::HS256) };
        let AlgorithmParameters::RSA(p) = &rsa.jwk.algorithm else { unreachable!() };
        jsonwebtoken::encode(&header, &good, &EncodingKey::from_secret(p.n.as_bytes())).unwrap()
    };
    // A key the issuer does not publish, under its own kid and under a published one.
    let unknown_kid = unpublished.sign(&good);
    let published_kid_wrong_key = {
        let header = Header { kid: Some(es.kid.clone()), ..Header::new(Algorithm::ES256) };
        jsonwebtoken::encode(&header, &good, &unpublished.encoding).unwrap()
    };
    let cases: Vec<(&str, String)> = vec![
        ("expired past the leeway", es.sign(&with(&|c| c["exp"] = json!(now() - 61 - 5)))),
        ("not valid yet past the leeway", es.sign(&with(&|c| c["nbf"] = json!(now() + 61 + 5)))),
        ("nbf of the wrong type", es.sign(&with(&|c| c["nbf"] = json!((now() + 3600).to_string())))),
        ("no exp", es.sign(&with(&|c| drop(c.as_object_mut().unwrap().remove("exp"))))),
        ("another issuer", es.sign(&with(&|c| c["iss"] = json!("https://evil.example.com")))),
        ("no issuer", es.sign(&with(&|c| drop(c.as_object_mut().unwrap().remove("iss"))))),
        ("another audience", es.sign(&with(&|c| c["aud"] = json!("another-app")))),
        ("no audience", es.sign(&with(&|c| drop(c.as_object_mut().unwrap().remove("aud"))))),
        ("a user that is not a UUID", es.sign(&with(&|c| c["sub"] = json!("alice")))),
        ("tampered payload", tampered),
        ("unknown key", unknown_kid),
        ("a published kid, another key", published_kid_wrong_key),
        ("alg none", alg_none),
        ("HS256 keyed with the RSA public key (PEM)", hs256_with_public_key),
        ("HS256 keyed with the RSA modulus", hs256_with_jwk_modulus),
        ("RS256 header on an ES256 key", {
            let header = Header { kid: Some(es.kid.clone()), ..Header::new(Algorithm::RS256) };
            jsonwebtoken::encode(&header, &good, &rsa.encoding).unwrap()
        }),
        ("not a JWT", "queue-token-like-value".to_owned()),
    ];
    for (what, jwt) in &cases {
        for (route, req) in routes(user) {
            let res = call(&app, signed(req(), jwt)).await;
            assert_eq!(res.body["code"], "IDENTITY_INVALID", "{what} on {route}: {res:?}");
            assert_problem(&res, 401, "IDENTITY_INVALID");
            assert_eq!(res.header("www-authenticate"), Some(r#"Bearer realm="identity", error="invalid_token""#));
        }
    }
    assert_eq!(balance_of(&world, user), 0, "nothing was charged");
    // Inside the leeway both ways, the same token verifies.
    let lenient = es.sign(&with(&|c| {
        c["exp"] = json!(now() - 30);
        c["nbf"] = json!(now() + 30);
    }));
    let res = call(&app, signed(get(&format!("/users/{user}/balance")), &lenient)).await;
    assert_eq!(res.status, 200, "{res:?}");
    // An audience list that contains ours is ours.
    let listed = es.sign(&with(&|c| c["aud"] = json!(["another-app", AUDIENCE])));
    assert_eq!(call(&app, signed(get(&format!("/users/{user}/balance")), &listed)).await.status, 200);
}

#[actix_web::test]
async fn another_users_id_in_the_body_or_path_is_403_and_nothing_is_stored() {
    let world = World::new();
    let key = TestKey::new(Algorithm::ES256);
    let issuer = TestIssuer::start(&[&key]);
    let (state, _stop) = identity_state(&world, &issuer).await;
    let app = app(state).await;
    let (me, victim) = (Uuid::new_v4(), Uuid::new_v4());
    let mine = key.sign(&claims(&issuer, me));
    let theirs = key.sign(&claims(&issuer, victim));
    // The victim has a token and a balance.
    let res = call(&app, signed(post("/queue/tokens").set_json(json!({})), &theirs)).await;
    assert_eq!(res.status, 201);
    let their_token = res.body["token"].as_str().unwrap().to_owned();
    let res = call(&app, signed(charge_req(victim, 7000, None), &theirs)).await;
    assert_eq!(res.status, 200);

    for (route, req) in routes(victim) {
        let res = call(&app, signed(req(), &mine)).await;
        assert_problem(&res, 403, "FORBIDDEN");
        assert!(!res.raw.contains(&their_token), "{route} leaks nothing");
    }
    assert_eq!(balance_of(&world, victim), 7000, "the victim's balance is untouched");
    assert_eq!(balance_of(&world, me), 0);
    let res = call(&app, signed(get(&format!("/users/{victim}/balance/history")), &theirs)).await;
    assert_eq!(res.body["entries"].as_array().map(Vec::len), Some(1), "one entry, the victim's own charge");
    // The attacker got no place in line: their first issue is a new token.
    let res = call(&app, signed(post("/queue/tokens").set_json(json!({ "userId": me })), &mine)).await;
    assert_eq!(res.status, 201, "{res:?}");
    // A keyed charge refused 403 recorded nothing under its key.
    let res = call(&app, signed(charge_req(victim, 1000, Some("same-key")), &mine)).await;
    assert_eq!(res.status, 403);
    let res = call(&app, signed(charge_req(victim, 1000, Some("same-key")), &theirs)).await;
    assert_eq!((res.status, res.header("idempotent-replayed")), (200, None), "{res:?}");
}

#[actix_web::test]
async fn an_unknown_kid_refetches_the_keys_once_and_not_again_within_10_s() {
    let world = World::new();
    let old = TestKey::new(Algorithm::ES256);
    let new = TestKey::new(Algorithm::EdDSA);
    let issuer = TestIssuer::start(&[&old]);
    let (state, _stop) = identity_state(&world, &issuer).await;
    let app = app(state).await;
    let user = Uuid::new_v4();
    let path = format!("/users/{user}/balance");
    assert_eq!(issuer.hits(), 1, "fetched once at start");
    assert_eq!(call(&app, signed(get(&path), &old.sign(&claims(&issuer, user)))).await.status, 200);

    // The issuer rotates: the new key is published beside the old one.
    issuer.publish(&[&new, &old]);
    // The start-up fetch was less than 10 s ago: wait out the gap, then one fetch is enough.
    actix_web::rt::time::sleep(adapters_http::identity::MIN_REFRESH_GAP).await;
    let res = call(&app, signed(get(&path), &new.sign(&claims(&issuer, user)))).await;
    assert_eq!(res.status, 200, "{res:?}");
    assert_eq!(issuer.hits(), 2, "one fetch, triggered by the unknown kid");
    assert_eq!(call(&app, signed(get(&path), &old.sign(&claims(&issuer, user)))).await.status, 200);

    // A stream of forged kids right after costs the issuer nothing more.
    for _ in 0..5 {
        let forged = TestKey::new(Algorithm::ES256).sign(&claims(&issuer, user));
        assert_problem(&call(&app, signed(get(&path), &forged)).await, 401, "IDENTITY_INVALID");
    }
    assert_eq!(issuer.hits(), 2, "no fetch within 10 s of the last");
}

#[actix_web::test]
async fn cached_keys_keep_verifying_while_the_issuer_is_down() {
    let world = World::new();
    let key = TestKey::new(Algorithm::ES256);
    let issuer = TestIssuer::start(&[&key]);
    let (state, _stop) = identity_state(&world, &issuer).await;
    let app = app(state).await;
    issuer.set_down(true);
    let user = Uuid::new_v4();
    let jwt = key.sign(&claims(&issuer, user));
    let res = call(&app, signed(charge_req(user, 300, None), &jwt)).await;
    assert_eq!(res.status, 200, "{res:?}");
    let res = call(&app, signed(post("/queue/tokens").set_json(json!({})), &jwt)).await;
    assert_eq!(res.status, 201, "{res:?}");
}

#[actix_web::test]
async fn a_cold_start_with_the_issuer_down_is_503_where_identity_is_needed_and_serves_the_rest() {
    let world = World::new();
    let key = TestKey::new(Algorithm::ES256);
    let issuer = TestIssuer::start(&[&key]);
    issuer.set_down(true);
    let (state, _stop) = identity_state(&world, &issuer).await;
    let app = app(state).await;
    let user = Uuid::new_v4();
    let jwt = key.sign(&claims(&issuer, user));
    for (route, req) in routes(user) {
        let res = call(&app, signed(req(), &jwt)).await;
        assert_problem(&res, 503, "UNAVAILABLE");
        let retry: u64 = res.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=10).contains(&retry), "{route}: Retry-After {retry}");
    }
    // Without a credential it is still 401: nothing about the keys is needed to say so.
    assert_problem(&call(&app, get(&format!("/users/{user}/balance"))).await, 401, "IDENTITY_MISSING");
    // The rest is served.
    assert_eq!(call(&app, get("/health/live")).await.status, 200);
    assert_eq!(call(&app, get("/health/ready")).await.status, 200);
    assert_problem(&call(&app, get("/queue/token").insert_header(bearer("no-such-token"))).await, 401, "TOKEN_INVALID");
    assert_problem(&call(&app, get("/concerts").insert_header(bearer("no-such-token"))).await, 401, "TOKEN_INVALID");
    assert_eq!(call(&app, get("/")).await.status, 200);
    assert_eq!(balance_of(&world, user), 0);
}

#[actix_web::test]
async fn the_document_and_the_page_follow_the_mode() {
    let world = World::new();
    // Identity off: the scheme is declared, optional; userId is required; the page is as ever.
    let off = app(world.state()).await;
    let doc = call(&off, get("/openapi.json")).await.body;
    assert_eq!(doc["components"]["securitySchemes"]["identity"]["bearerFormat"], "JWT");
    assert_eq!(doc["paths"]["/queue/tokens"]["post"]["security"], json!([{}, { "identity": [] }]));
    assert_eq!(doc["components"]["schemas"]["IssueTokenRequest"]["required"], json!(["userId"]));
    let responses = &doc["paths"]["/users/{userId}/balance"]["get"]["responses"];
    assert!(responses["401"]["description"].as_str().unwrap().contains("IDENTITY_INVALID"));
    assert!(responses["403"]["description"].as_str().unwrap().contains("FORBIDDEN"));
    let page = call(&off, get("/")).await;
    assert!(!page.raw.contains("concert-auth-issuer"));
    assert!(!page.header("content-security-policy").unwrap().contains("connect-src"));
    let res = call(&off, post("/queue/tokens").insert_header(json_type()).set_payload("{}")).await;
    assert_problem(&res, 400, "INVALID_REQUEST");

    // Identity on: required on the four routes, userId optional, the page told where to sign in.
    let key = TestKey::new(Algorithm::ES256);
    let issuer = TestIssuer::start(&[&key]);
    let identity = Identity::new(IdentityConfig { page_client_id: Some("page\"<client>".into()), ..issuer.config() });
    let on = app(world.builder().identity(Some(identity)).build()).await;
    let doc = call(&on, get("/openapi.json")).await.body;
    for (path, method) in [
        ("/queue/tokens", "post"),
        ("/users/{userId}/balance", "get"),
        ("/users/{userId}/balance/history", "get"),
        ("/users/{userId}/balance/charge", "post"),
    ] {
        assert_eq!(doc["paths"][path][method]["security"], json!([{ "identity": [] }]), "{path}");
    }
    assert_eq!(doc["paths"]["/queue/token"]["get"]["security"], json!([{ "bearer": [] }]));
    assert_eq!(doc["components"]["schemas"]["IssueTokenRequest"]["required"], json!([]));
    let page = call(&on, get("/")).await;
    assert!(page.raw.contains(&format!("<meta name=\"concert-auth-issuer\" content=\"{}\">", issuer.url)));
    assert!(page.raw.contains("<meta name=\"concert-auth-client-id\" content=\"page&quot;&lt;client&gt;\">"));
    let csp = page.header("content-security-policy").unwrap();
    assert!(csp.ends_with(&format!("; connect-src 'self' {}", issuer.url)), "{csp}");
}

/// A token that verified is kept (see `identity`'s "Verified tokens"), but a kept token is
/// still refused once its time is up, and after the issuer drops its key: the cache only saves
/// the signature check.
#[actix_web::test]
async fn a_kept_token_still_expires_and_still_needs_its_key() {
    let world = World::new();
    let key = TestKey::new(Algorithm::ES256);
    let other = TestKey::new(Algorithm::ES256);
    let issuer = TestIssuer::start(&[&key, &other]);
    let (state, _stop) = identity_state(&world, &issuer).await;
    let app = app(state).await;
    let user = Uuid::new_v4();
    let path = format!("/users/{user}/balance");
    // Expired 59 s ago: still inside the 60 s leeway for about a second.
    let mut late = claims(&issuer, user);
    late["exp"] = json!(now() - 59);
    let jwt = key.sign(&late);
    assert_eq!(call(&app, signed(get(&path), &jwt)).await.status, 200);
    assert_eq!(call(&app, signed(get(&path), &jwt)).await.status, 200, "kept");
    actix_web::rt::time::sleep(Duration::from_millis(2_100)).await;
    assert_problem(&call(&app, signed(get(&path), &jwt)).await, 401, "IDENTITY_INVALID");

    // Kept, then its key leaves the JWKS: refused once the keys are fetched again.
    let kept = key.sign(&claims(&issuer, user));
    assert_eq!(call(&app, signed(get(&path), &kept)).await.status, 200);
    issuer.publish(&[&other]);
    actix_web::rt::time::sleep(adapters_http::identity::MIN_REFRESH_GAP).await;
    // An unknown kid triggers the fetch that drops the old key.
    let fresh = TestKey::new(Algorithm::ES256).sign(&claims(&issuer, user));
    assert_problem(&call(&app, signed(get(&path), &fresh)).await, 401, "IDENTITY_INVALID");
    assert_problem(&call(&app, signed(get(&path), &kept)).await, 401, "IDENTITY_INVALID");
    assert_eq!(call(&app, signed(get(&path), &other.sign(&claims(&issuer, user)))).await.status, 200);
}
