//! Test doubles: a scripted account store.

use super::*;

/// What the test's account store does besides passing each call on to the memory store.
pub(crate) enum Script {
    /// Every keyed credit finds a concurrent claimer.
    KeyedInFlight,
    /// The first `balance` call blocks until released.
    BlockBalance(Blocker),
    /// The first credit marks its commit point, then blocks until released (a COMMIT sent to a
    /// store that froze before answering).
    CommitThenBlock(Blocker),
}

pub(crate) struct ScriptedAccounts {
    inner: Arc<dyn AccountStore>,
    script: Script,
}

/// The use cases on `ports`, with their account store following `script`.
pub(crate) fn scripted(mut ports: Ports, script: Script) -> Ticketing {
    ports.accounts = Arc::new(ScriptedAccounts { inner: ports.accounts.clone(), script });
    Ticketing::new(ports, policy())
}

impl AccountStore for ScriptedAccounts {
    fn balance(&self, user: UserId) -> Result<Won, StoreError> {
        if let Script::BlockBalance(blocker) = &self.script {
            blocker.block_once();
        }
        self.inner.balance(user)
    }
    fn credit(
        &self,
        req: &CreditRequest,
        guard: Option<&IdempotencyGuard<'_>>,
    ) -> Result<Claimed<CreditOutcome>, StoreError> {
        match &self.script {
            Script::KeyedInFlight if guard.is_some() => return Ok(Claimed::InFlight),
            Script::CommitThenBlock(blocker) => {
                assert!(domain::call::commit_point(), "the caller still waits");
                blocker.block_once();
            }
            _ => {}
        }
        self.inner.credit(req, guard)
    }
    fn ledger(&self, user: UserId, query: &LedgerQuery) -> Result<Option<Vec<LedgerEntry>>, StoreError> {
        self.inner.ledger(user, query)
    }
}

/// Makes the first `balance` call block until released.
#[derive(Clone)]
pub(crate) struct Blocker {
    blocked: Arc<Mutex<Option<mpsc::Sender<()>>>>,
    blocked_rx: Arc<Mutex<mpsc::Receiver<()>>>,
    release_tx: Arc<Mutex<mpsc::Sender<()>>>,
    release_rx: Arc<Mutex<Option<mpsc::Receiver<()>>>>,
}

impl Blocker {
    pub(crate) fn new() -> Self {
        let (btx, brx) = mpsc::channel();
        let (rtx, rrx) = mpsc::channel();
        Self {
            blocked: Arc::new(Mutex::new(Some(btx))),
            blocked_rx: Arc::new(Mutex::new(brx)),
            release_tx: Arc::new(Mutex::new(rtx)),
            release_rx: Arc::new(Mutex::new(Some(rrx))),
        }
    }

    /// Called by the store: blocks the first caller until [`Blocker::release`].
    pub(crate) fn block_once(&self) {
        let Some(release) = self.release_rx.lock().unwrap().take() else { return };
        if let Some(tx) = self.blocked.lock().unwrap().take() {
            tx.send(()).unwrap();
        }
        release.recv_timeout(StdDuration::from_secs(30)).expect("released");
    }

    /// Waits (without blocking the test's runtime) until a store call is blocked.
    pub(crate) async fn wait_until_blocked(&self) {
        for _ in 0..30_000 {
            if self.blocked_rx.lock().unwrap().try_recv().is_ok() {
                return;
            }
            actix_web::rt::time::sleep(StdDuration::from_millis(1)).await;
        }
        panic!("no store call blocked");
    }

    pub(crate) fn release(&self) {
        self.release_tx.lock().unwrap().send(()).unwrap();
    }
}
