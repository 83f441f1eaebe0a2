//! Signed identities against a real OpenID Connect provider: panva's `oidc-provider`
//! (`tests/oidc`, installed with `npm ci` there) on a free loopback port, with a public PKCE
//! client and users whose `sub` are UUIDs. Tokens come from the provider's own authorization
//! code flow (`tests/oidc/login.mjs` drives its login form), never from this test.
//!
//! - a signed-in buyer's whole purchase, and what another signed-in user cannot do;
//! - key rotation at the provider: the new key's tokens accepted after the refresh an unknown
//!   `kid` triggers, the old key's until it leaves the JWKS;
//! - the provider down: cached keys keep verifying; a cold start answers 503 where identity is
//!   needed, serves the rest, and recovers once the provider is back.
//!
//! The negative token forms (expired, tampered, `alg: none`, ...) are pinned route by route in
//! `crates/adapters-http/tests/identity.rs` with keys that test controls.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation should panic"
)]

mod support;

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{free_port, read_full, wait_for, Launch, Server, TempDir};
use uuid::Uuid;

const CLIENT: &str = "concert-page";

fn oidc_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oidc");
    assert!(
        dir.join("node_modules/oidc-provider").is_dir(),
        "oidc-provider is not installed: run `npm ci` in tests/oidc (.ci/run does)"
    );
    dir
}

fn node(args: &[&str]) -> String {
    let out = Command::new("node").current_dir(oidc_dir()).args(args).output().expect("node is installed");
    assert!(out.status.success(), "node {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The provider process, its keys file and its users; killed when dropped (and it exits by
/// itself when this process dies: its standard input closes).
struct Provider {
    child: Option<Child>,
    _stdin: Option<ChildStdin>,
    issuer: String,
    port: u16,
    keys: PathBuf,
    users: Vec<Uuid>,
    _dir: TempDir,
}

impl Provider {
    /// A provider with one fresh signing key, on `port` (0: a free one).
    fn start(port: u16, users: &[Uuid]) -> Self {
        let dir = TempDir::new("concert-oidc");
        let keys = dir.path().join("keys.json");
        node(&["keys.mjs", "new", keys.to_str().unwrap()]);
        let mut provider =
            Self { child: None, _stdin: None, issuer: String::new(), port, keys, users: users.to_vec(), _dir: dir };
        provider.run();
        provider
    }

    fn run(&mut self) {
        let users = self.users.iter().map(Uuid::to_string).collect::<Vec<_>>().join(",");
        let mut child = Command::new("node")
            .current_dir(oidc_dir())
            .args(["provider.mjs", "--keys", self.keys.to_str().unwrap(), "--port", &self.port.to_string()])
            .args(["--client", CLIENT, "--users", &users])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the provider");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let started: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("provider did not start: {line:?}"));
        self.issuer = started["issuer"].as_str().unwrap().to_owned();
        self.port = self.issuer.rsplit(':').next().unwrap().parse().unwrap();
        self._stdin = child.stdin.take();
        self.child = Some(child);
    }

    fn stop(&mut self) {
        self._stdin = None;
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Restarts on the same port (the same issuer) after `keys.mjs <command>`.
    fn restart_with(&mut self, command: &str) -> String {
        self.stop();
        let kid = node(&["keys.mjs", command, self.keys.to_str().unwrap()]);
        self.run();
        kid
    }

    /// An ID token of `user`, through the provider's authorization code flow with PKCE.
    fn sign_in(&self, user: Uuid) -> String {
        let out = node(&["login.mjs", &self.issuer, CLIENT, "http://127.0.0.1:9/callback", &user.to_string()]);
        let tokens: Value = serde_json::from_str(&out).unwrap();
        tokens["id_token"].as_str().unwrap().to_owned()
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The `kid` of a JWT's header.
fn kid_of(jwt: &str) -> String {
    use base64::Engine as _;
    let header = jwt.split('.').next().unwrap();
    let header: Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

/// `concert serve --store memory` with identity on, trusting `issuer`.
fn serve(issuer: &str, extra: &[(&str, &str)], ready: bool) -> Server {
    let mut launch = Launch::bare()
        .arg("--store")
        .arg("memory")
        .env("AUTH_ISSUER", issuer)
        .env("AUTH_AUDIENCE", CLIENT)
        .env("AUTH_PAGE_CLIENT_ID", CLIENT)
        .env("QUEUE_ADMIT_INTERVAL_SECS", "1")
        .env("SCHEDULER_CHECK_MILLIS", "100");
    for (k, v) in extra {
        launch = launch.env(k, v);
    }
    if !ready {
        launch = launch.live_only();
    }
    Server::launch(None, launch)
}

fn status(s: &Server, method: reqwest::Method, path: &str, jwt: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let mut req = s.http.request(method, s.url(path));
    if let Some(jwt) = jwt {
        req = req.bearer_auth(jwt);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    s.send(req)
}

#[test]
fn a_signed_in_buyer_buys_a_seat_and_another_user_cannot_touch_it() {
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
    let provider = Provider::start(0, &[alice, bob]);
    let s = serve(&provider.issuer, &[], true);
    let a = provider.sign_in(alice);
    let b = provider.sign_in(bob);
    use reqwest::Method as M;

    // Without identity, every route that names a user is refused and nothing is done.
    let (st, p) = status(&s, M::POST, "/queue/tokens", None, Some(json!({ "userId": alice.to_string() })));
    assert_eq!((st, p["code"].as_str()), (401, Some("IDENTITY_MISSING")));
    let (st, p) = status(&s, M::POST, &format!("/users/{alice}/balance/charge"), None, Some(json!({"amount": 5})));
    assert_eq!((st, p["code"].as_str()), (401, Some("IDENTITY_MISSING")));

    // Charge and read with the provider's token.
    let (st, body) =
        status(&s, M::POST, &format!("/users/{alice}/balance/charge"), Some(&a), Some(json!({ "amount": 500_000 })));
    assert_eq!((st, body["balance"].as_i64()), (200, Some(500_000)), "{body}");
    let (st, body) = status(&s, M::GET, &format!("/users/{alice}/balance/history"), Some(&a), None);
    assert_eq!((st, body["entries"].as_array().map(Vec::len)), (200, Some(1)));

    // Join the line without naming the user, wait for the turn, hold and pay.
    let (st, body) = status(&s, M::POST, "/queue/tokens", Some(&a), Some(json!({})));
    assert_eq!(st, 201, "{body}");
    assert_eq!(body["userId"], json!(alice.to_string()));
    let token = body["token"].as_str().unwrap().to_owned();
    wait_for("alice's turn", Duration::from_secs(20), || s.get("/queue/token", Some(&token)).1["status"] == "ACTIVE");
    let (_, concerts) = s.get("/concerts", Some(&token));
    let concert = concerts[0]["id"].as_str().unwrap().to_owned();
    let (_, schedules) = s.get(&format!("/concerts/{concert}/schedules"), Some(&token));
    let schedule = schedules[0]["id"].as_str().unwrap().to_owned();
    let (_, seats) = s.get(&format!("/schedules/{schedule}/seats"), Some(&token));
    let seat = seats.as_array().unwrap().iter().find(|x| x["status"] == "AVAILABLE").unwrap();
    let price = seat["price"].as_i64().unwrap();
    let (st, held) =
        s.post("/reservations", Some(&token), json!({ "scheduleId": schedule, "seatId": seat["id"].clone() }));
    assert_eq!(st, 201, "{held}");
    let reservation = held["id"].as_str().unwrap().to_owned();
    let (st, paid) = s.post("/payments", Some(&token), json!({ "reservationId": reservation }));
    assert_eq!(st, 201, "{paid}");
    let (_, balance) = status(&s, M::GET, &format!("/users/{alice}/balance"), Some(&a), None);
    assert_eq!(balance["balance"].as_i64(), Some(500_000 - price));

    // Bob, signed in as himself, can neither read nor charge Alice's balance nor take her place.
    for (method, path, body) in [
        (M::GET, format!("/users/{alice}/balance"), None),
        (M::GET, format!("/users/{alice}/balance/history"), None),
        (M::POST, format!("/users/{alice}/balance/charge"), Some(json!({ "amount": 1 }))),
        (M::POST, "/queue/tokens".to_owned(), Some(json!({ "userId": alice.to_string() }))),
    ] {
        let (st, p) = status(&s, method, &path, Some(&b), body);
        assert_eq!((st, p["code"].as_str()), (403, Some("FORBIDDEN")), "{path}");
    }
    // Nor see her reservation with a place of his own.
    let (st, body) = status(&s, M::POST, "/queue/tokens", Some(&b), Some(json!({})));
    assert_eq!(st, 201, "{body}");
    let bobs = body["token"].as_str().unwrap().to_owned();
    wait_for("bob's turn", Duration::from_secs(20), || s.get("/queue/token", Some(&bobs)).1["status"] == "ACTIVE");
    assert_eq!(s.get(&format!("/reservations/{reservation}"), Some(&bobs)).0, 404);
    let (_, balance) = status(&s, M::GET, &format!("/users/{alice}/balance"), Some(&a), None);
    assert_eq!(balance["balance"].as_i64(), Some(500_000 - price), "Bob changed nothing");
}

#[test]
fn a_rotated_key_is_accepted_after_one_refresh_and_the_old_one_until_it_leaves_the_jwks() {
    let user = Uuid::new_v4();
    let mut provider = Provider::start(0, &[user]);
    let started = Instant::now();
    let s = serve(&provider.issuer, &[("AUTH_JWKS_REFRESH_SECS", "10")], true);
    let path = format!("/users/{user}/balance");
    let old = provider.sign_in(user);
    assert_eq!(s.get(&path, Some(&old)).0, 200);

    // The provider rotates: a new key signs, the old one is still published.
    let new_kid = provider.restart_with("rotate");
    let new = provider.sign_in(user);
    assert_eq!(kid_of(&new), new_kid, "the provider signs with the new key");
    assert_ne!(kid_of(&new), kid_of(&old));
    // Once 10 s have passed since the start-up fetch, the unknown kid triggers one fetch, at
    // once. The server made that fetch some time after `started` (it was starting up), so the
    // test allows a few seconds more, polling, rather than guess the instant.
    std::thread::sleep(Duration::from_secs(10).saturating_sub(started.elapsed()));
    let deadline = Instant::now() + Duration::from_secs(5);
    let (st, body) = loop {
        let (st, body) = s.get(&path, Some(&new));
        if st == 200 || Instant::now() >= deadline {
            break (st, body);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(st, 200, "the new key's token is accepted after the refresh: {body}");
    assert_eq!(s.get(&path, Some(&old)).0, 200, "the old key is still published");

    // The old key leaves the JWKS: its tokens stop verifying at the next scheduled refresh.
    provider.restart_with("retire");
    wait_for("the old key to be dropped", Duration::from_secs(30), || s.get(&path, Some(&old)).0 == 401);
    let (st, p) = s.get(&path, Some(&old));
    assert_eq!((st, p["code"].as_str()), (401, Some("IDENTITY_INVALID")));
    assert_eq!(s.get(&path, Some(&new)).0, 200);
}

#[test]
fn with_the_provider_down_cached_keys_verify_and_a_cold_start_answers_503_until_it_is_back() {
    let user = Uuid::new_v4();
    let mut provider = Provider::start(0, &[user]);
    let s = serve(&provider.issuer, &[], true);
    let jwt = provider.sign_in(user);
    let path = format!("/users/{user}/balance");
    assert_eq!(s.get(&path, Some(&jwt)).0, 200);

    // Down: the cached key keeps verifying.
    provider.stop();
    assert_eq!(s.get(&path, Some(&jwt)).0, 200);
    assert_eq!(s.post("/queue/tokens", Some(&jwt), json!({})).0, 201);

    // A cold start with the provider down: 503 with Retry-After where identity is needed ...
    let cold = serve(&provider.issuer, &[], true);
    for (method, p) in [("GET", path.clone()), ("POST", "/queue/tokens".to_owned())] {
        let req = match method {
            "GET" => cold.http.get(cold.url(&p)),
            _ => cold.http.post(cold.url(&p)).json(&json!({})),
        };
        let (st, headers, body) = read_full(req.bearer_auth(&jwt).send().unwrap());
        assert_eq!((st, body["code"].as_str()), (503, Some("UNAVAILABLE")), "{p}: {body}");
        assert!(headers.contains_key("retry-after"));
    }
    // ... and everything else is served.
    assert_eq!(cold.get("/health/ready", None).0, 200);
    assert_eq!(cold.get("/queue/token", Some("not-a-token")).1["code"], "TOKEN_INVALID");
    assert_eq!(cold.http.get(cold.url("/")).send().unwrap().status().as_u16(), 200);

    // The provider comes back on its address: the instance fetches the keys by itself.
    provider.run();
    wait_for("the keys after the provider's return", Duration::from_secs(30), || cold.get(&path, Some(&jwt)).0 == 200);
}

#[test]
fn an_unreachable_issuer_at_start_is_not_fatal_and_a_bad_setting_is() {
    // Identity needs an audience: the binary refuses to start without one, naming the variable.
    let out = Command::new(support::concert_bin())
        .args(["serve", "--store", "memory", "--bind-addr", "127.0.0.1:0"])
        .env("AUTH_ISSUER", "https://id.example.com")
        .env_remove("AUTH_AUDIENCE")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("AUTH_AUDIENCE"));
    // A loopback issuer nobody listens on: the service starts, and only identity waits for it.
    let s = serve(&format!("http://127.0.0.1:{}", free_port()), &[], false);
    assert_eq!(s.get("/health/live", None).0, 200);
}
