//! The lease's contract: one set of scenarios, run against keyrot-core's [`FakeLease`] and
//! against [`DynamoLease`] on moto's server (one table per test, made as the template makes
//! it), so the fake cannot drift from DynamoDB's conditional writes.
//!
//! moto checks a condition and writes without a lock between them; the server the tests start
//! takes one around DynamoDB's item operations (see `keyrot_aws::moto`), so racing writers
//! are refused as DynamoDB refuses them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use keyrot_aws::DynamoLease;
use keyrot_aws::moto::Moto;
use keyrot_core::fake::{FakeAws, FaultKind, FaultPlan, FaultRates, op};
use keyrot_core::{Claim, Lease, LeaseError, LeaseToken, Timestamp, UserName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

mod calls;

use calls::Calls;

const MINUTE: Duration = Duration::from_secs(60);

/// A lease table and a way to lose the reply of the next `acquire`.
struct World {
    id: String,
    lease: Arc<dyn Lease>,
    lost: LostReply,
    /// Every AWS action the adapter called (moto only).
    calls: Calls,
}

enum LostReply {
    /// The fakes' SDK retries a call whose reply the plan loses.
    Fake(FaultPlan),
    /// A proxy in front of moto that forwards a `PutItem` and answers it with a 500.
    Moto(Arc<PutItemProxy>),
}

impl World {
    async fn new(moto: bool, test: &str) -> Self {
        let id = test.replace('_', "-");
        if !moto {
            let aws = FakeAws::new(t0(), 7, FaultRates::none());
            return Self {
                id,
                lease: Arc::new(aws.lease.clone()),
                lost: LostReply::Fake(aws.plan),
                calls: Calls::default(),
            };
        }
        let moto = shared_moto().await;
        let table = format!("keyrot-test-{id}-leases");
        moto.create_lease_table(&table).await.unwrap();
        let proxy = PutItemProxy::start(moto.endpoint()).await;
        let settings = keyrot_aws::AwsSettings {
            endpoint_url: Some(proxy.endpoint.clone()),
            ..moto.settings()
        };
        let calls = Calls::default();
        let client = calls.dynamodb(&moto.admin_config_with(&settings).await);
        Self {
            id,
            lease: Arc::new(DynamoLease::new(client, table)),
            lost: LostReply::Moto(proxy),
            calls,
        }
    }

    fn user(&self, name: &str) -> UserName {
        UserName::new(format!("{}-{name}", self.id)).unwrap()
    }

    /// The next `acquire` takes effect, and its reply is lost once.
    fn lose_next_acquire_reply(&self) {
        match &self.lost {
            LostReply::Fake(plan) => plan.fail_at(op::LEASE_ACQUIRE, FaultKind::FailAfter),
            LostReply::Moto(proxy) => proxy.fault(PutFault::LoseReply, 1),
        }
    }

    /// How many replies were lost and retried.
    fn retried(&self) -> u64 {
        match &self.lost {
            LostReply::Fake(plan) => plan.sdk_retried(op::LEASE_ACQUIRE),
            LostReply::Moto(proxy) => proxy.faulted.load(Ordering::SeqCst).into(),
        }
    }

    async fn granted(&self, user: &UserName, now: Timestamp, until: Timestamp) -> LeaseToken {
        match self.lease.acquire(user, now, until).await.unwrap() {
            Claim::Granted(token) => token,
            taken => panic!("{user}: {taken:?}"),
        }
    }

    /// Who holds `user` at `now`, and until when, as a caller that is refused sees it.
    async fn holder(&self, user: &UserName, now: Timestamp) -> (LeaseToken, Timestamp) {
        match self.lease.acquire(user, now, now + MINUTE).await.unwrap() {
            Claim::Taken { holder, until } => (holder, until),
            granted => panic!("{user} is free at {now}: {granted:?}"),
        }
    }
}

fn t0() -> Timestamp {
    "2026-12-01T09:00:00Z".parse().unwrap()
}

fn at(minutes: u32) -> Timestamp {
    t0() + MINUTE * minutes
}

/// The process's moto server (started on first use).
async fn shared_moto() -> &'static Moto {
    tokio::task::spawn_blocking(Moto::shared)
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Every scenario, once per backend.
macro_rules! contract {
    ($($scenario:ident),* $(,)?) => {
        mod fake {
            $(
                #[tokio::test]
                async fn $scenario() {
                    super::$scenario(super::World::new(false, stringify!($scenario)).await).await;
                }
            )*
        }
        mod moto {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    let world = super::World::new(true, stringify!($scenario)).await;
                    let calls = world.calls.clone();
                    super::$scenario(world).await;
                    assert!(!calls.seen().is_empty(), "the recorder saw no call");
                    calls.assert_within(keyrot_aws::permissions::ROTATOR_ACTIONS, "rotator");
                }
            )*
        }
    };
}

contract!(
    the_first_claim_is_granted_and_a_second_caller_refused,
    an_expired_claim_is_taken_over,
    releasing_another_runs_claim_changes_nothing,
    a_retried_acquire_after_a_lost_reply_is_granted,
    of_racing_callers_exactly_one_is_granted,
    a_batch_claims_the_free_names_the_held,
    a_batch_release_gives_back_only_our_own_claims,
);

async fn a_batch_claims_the_free_names_the_held(w: World) {
    let users: Vec<UserName> = (0..5).map(|i| w.user(&format!("u{i}"))).collect();
    // u1 is held by another run; u3 was, but its claim ran out.
    let other = w.granted(&users[1], at(0), at(10)).await;
    w.granted(&users[3], at(0), at(2)).await;
    let claims = w.lease.acquire_all(&users, at(5), at(15)).await.unwrap();
    assert_eq!(claims.len(), users.len());
    let mut tokens = Vec::new();
    for (i, (user, claim)) in users.iter().zip(&claims).enumerate() {
        match claim {
            Claim::Taken { holder, until } => {
                assert_eq!(i, 1, "{user}: {claim:?}");
                assert_eq!((holder, *until), (&other, at(10)));
            }
            Claim::Granted(token) => {
                assert_eq!(
                    w.holder(user, at(6)).await,
                    (token.clone(), at(15)),
                    "{user}"
                );
                tokens.push(token.clone());
            }
        }
    }
    assert_eq!(tokens.len(), 4);
    assert_eq!(
        tokens
            .iter()
            .collect::<std::collections::HashSet<_>>()
            .len(),
        4,
        "one token a claim"
    );
    // A second batch over the same users finds them all held.
    let again = w.lease.acquire_all(&users, at(6), at(16)).await.unwrap();
    assert!(
        again.iter().all(|c| matches!(c, Claim::Taken { .. })),
        "{again:?}"
    );
}

async fn a_batch_release_gives_back_only_our_own_claims(w: World) {
    let (alice, bob, carol) = (w.user("alice"), w.user("bob"), w.user("carol"));
    let ours_a = w.granted(&alice, at(0), at(10)).await;
    let ours_b = w.granted(&bob, at(0), at(2)).await;
    // bob's claim ran out and another run took it; carol's was never ours.
    let theirs_b = w.granted(&bob, at(3), at(13)).await;
    let theirs_c = w.granted(&carol, at(3), at(13)).await;
    let held = vec![
        (alice.clone(), ours_a.clone()),
        (bob.clone(), ours_b),
        (carol.clone(), LeaseToken::new("never-issued")),
    ];
    w.lease.release_all(&held).await.unwrap();
    // Released twice (a retry after a lost reply) is fine.
    w.lease.release_all(&held).await.unwrap();
    w.granted(&alice, at(4), at(14)).await;
    assert_eq!(w.holder(&bob, at(4)).await, (theirs_b, at(13)));
    assert_eq!(w.holder(&carol, at(4)).await, (theirs_c, at(13)));
}

async fn the_first_claim_is_granted_and_a_second_caller_refused(w: World) {
    let alice = w.user("alice");
    let first = w.granted(&alice, at(0), at(10)).await;
    assert_eq!(w.holder(&alice, at(1)).await, (first.clone(), at(10)));
    // Claims are per user.
    let bob = w.granted(&w.user("bob"), at(1), at(11)).await;
    assert_ne!(bob, first);
    // Our own claim renews while it is live.
    assert!(w.lease.renew(&alice, &first, at(15)).await.unwrap());
    assert_eq!(w.holder(&alice, at(12)).await, (first, at(15)));
}

async fn an_expired_claim_is_taken_over(w: World) {
    let alice = w.user("alice");
    let old = w.granted(&alice, at(0), at(10)).await;
    // A claim is free once the caller's `now` reaches its `until`.
    let new = w.granted(&alice, at(10), at(20)).await;
    assert_ne!(old, new);
    assert!(!w.lease.renew(&alice, &old, at(30)).await.unwrap());
    assert!(w.lease.renew(&alice, &new, at(30)).await.unwrap());
    assert_eq!(
        w.holder(&alice, at(25)).await,
        (new, at(30)),
        "the old holder's failed renewal changed nothing; the new holder's counted"
    );
}

async fn releasing_another_runs_claim_changes_nothing(w: World) {
    let alice = w.user("alice");
    let old = w.granted(&alice, at(0), at(10)).await;
    let new = w.granted(&alice, at(10), at(20)).await;
    w.lease.release(&alice, &old).await.unwrap();
    assert_eq!(w.holder(&alice, at(11)).await, (new.clone(), at(20)));
    // Released (twice: a retried release is fine), the user is free before `until`.
    w.lease.release(&alice, &new).await.unwrap();
    w.lease.release(&alice, &new).await.unwrap();
    w.granted(&alice, at(11), at(21)).await;
    // Releasing or renewing a claim nobody ever made changes nothing either.
    let nobody = w.user("nobody");
    w.lease
        .release(&nobody, &LeaseToken::new("never-issued"))
        .await
        .unwrap();
    assert!(
        !w.lease
            .renew(&nobody, &LeaseToken::new("never-issued"), at(30))
            .await
            .unwrap()
    );
    w.granted(&nobody, at(11), at(21)).await;
}

async fn a_retried_acquire_after_a_lost_reply_is_granted(w: World) {
    let alice = w.user("alice");
    w.lose_next_acquire_reply();
    // The claim was written, its reply lost; the retry finds its own claim.
    let ours = w.granted(&alice, at(0), at(10)).await;
    assert_eq!(w.retried(), 1, "one lost reply, one retry");
    assert_eq!(
        w.holder(&alice, at(1)).await,
        (ours, at(10)),
        "the claim the retry was granted is the one recorded"
    );
}

async fn of_racing_callers_exactly_one_is_granted(w: World) {
    let alice = w.user("alice");
    for round in 0..5 {
        let now = at(round * 10);
        let claims = futures::future::join_all(
            (0..8).map(|_| w.lease.acquire(&alice, now, now + MINUTE * 10)),
        )
        .await;
        let granted: Vec<LeaseToken> = claims
            .into_iter()
            .filter_map(|c| match c.unwrap() {
                Claim::Granted(token) => Some(token),
                Claim::Taken { .. } => None,
            })
            .collect();
        assert_eq!(granted.len(), 1, "round {round}: {granted:?}");
    }
}

// ---- moto only ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_without_the_old_item_reads_the_holder() {
    let w = World::new(true, "refusal-without-item").await;
    let LostReply::Moto(proxy) = &w.lost else {
        unreachable!("a moto world")
    };
    let alice = w.user("alice");
    let holder = w.granted(&alice, at(0), at(10)).await;
    proxy.fault(PutFault::DropOldItem, 1);
    assert_eq!(w.holder(&alice, at(1)).await, (holder, at(10)));
    assert_eq!(proxy.faulted.load(Ordering::SeqCst), 1);
    assert!(
        w.calls.seen().contains("dynamodb:GetItem"),
        "the holder was read: {:?}",
        w.calls.seen()
    );
    w.calls
        .assert_within(keyrot_aws::permissions::ROTATOR_ACTIONS, "rotator");
}

// ---- moto only: errors ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_table_is_named_with_the_setting_that_names_it() {
    let moto = shared_moto().await;
    let client = aws_sdk_dynamodb::Client::new(&moto.admin_config().await);
    let lease = DynamoLease::new(client, "keyrot-test-no-such-table");
    let err = lease
        .acquire(&UserName::new("alice").unwrap(), at(0), at(10))
        .await
        .unwrap_err();
    let chain = keyrot_core::driver::error_chain(&err);
    assert!(matches!(err, LeaseError::Other(_)), "{err:?}");
    assert!(chain.contains("keyrot-test-no-such-table"), "{chain}");
    assert!(chain.contains("KEYROT_LEASE_TABLE"), "{chain}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_without_dynamodb_is_access_denied() {
    let moto = shared_moto().await;
    let table = "keyrot-test-denied-leases";
    moto.create_lease_table(table).await.unwrap();
    // A user with no policy at all: moto enforces IAM policies once authentication is on.
    moto.create_user("keyrot-test-no-dynamodb", &[])
        .await
        .unwrap();
    let iam = aws_sdk_iam::Client::new(&moto.admin_config().await);
    let key = iam
        .create_access_key()
        .user_name("keyrot-test-no-dynamodb")
        .send()
        .await
        .unwrap();
    let key = key.access_key().unwrap();
    let config = moto
        .settings()
        .load_with_key(key.access_key_id(), key.secret_access_key())
        .await;
    let lease = DynamoLease::new(aws_sdk_dynamodb::Client::new(&config), table);
    let err = lease
        .acquire(&UserName::new("alice").unwrap(), at(0), at(10))
        .await
        .unwrap_err();
    assert!(matches!(err, LeaseError::AccessDenied(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_beyond_the_retries_is_its_own_error() {
    let moto = shared_moto().await;
    let table = "keyrot-test-throttled-leases";
    moto.create_lease_table(table).await.unwrap();
    let proxy = PutItemProxy::start(moto.endpoint()).await;
    proxy.fault(PutFault::Throttle, u32::MAX);
    let settings = keyrot_aws::AwsSettings {
        endpoint_url: Some(proxy.endpoint.clone()),
        max_attempts: Some(2),
        initial_backoff: Some(Duration::from_millis(10)),
        ..moto.settings()
    };
    let client = aws_sdk_dynamodb::Client::new(&moto.admin_config_with(&settings).await);
    let lease = DynamoLease::new(client, table);
    let err = lease
        .acquire(&UserName::new("alice").unwrap(), at(0), at(10))
        .await
        .unwrap_err();
    assert!(matches!(err, LeaseError::Throttled(_)), "{err:?}");
    assert_eq!(
        proxy.faulted.load(Ordering::SeqCst),
        2,
        "both attempts throttled"
    );
}

/// What [`PutItemProxy`] does to a `PutItem`.
#[derive(Debug, Clone, Copy)]
enum PutFault {
    /// Forward it, then answer with a 500 instead of moto's reply: the call took effect, its
    /// reply was lost, and the SDK retries it.
    LoseReply,
    /// Answer with DynamoDB's throttling error without forwarding it.
    Throttle,
    /// Forward it, and answer a failed condition without the item it failed on (as a store
    /// that ignores `ReturnValuesOnConditionCheckFailure` would).
    DropOldItem,
}

/// A loopback proxy in front of moto that applies a [`PutFault`] to the next `PutItem`s and
/// forwards everything else. (moto itself never loses a reply or throttles.)
struct PutItemProxy {
    endpoint: String,
    plan: std::sync::Mutex<Option<(PutFault, u32)>>,
    faulted: AtomicU32,
}

impl PutItemProxy {
    async fn start(upstream: &str) -> Arc<Self> {
        let upstream = upstream.trim_start_matches("http://").to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = Arc::new(Self {
            endpoint: format!("http://{}", listener.local_addr().unwrap()),
            plan: std::sync::Mutex::new(None),
            faulted: AtomicU32::new(0),
        });
        let serving = proxy.clone();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let (proxy, upstream) = (serving.clone(), upstream.clone());
                tokio::spawn(async move {
                    let _ = proxy.serve(conn, &upstream).await;
                });
            }
        });
        proxy
    }

    /// Applies `fault` to the next `times` PutItems.
    fn fault(&self, fault: PutFault, times: u32) {
        *self.plan.lock().unwrap() = Some((fault, times));
    }

    /// The fault for this PutItem, if any is left.
    fn take(&self) -> Option<PutFault> {
        let mut plan = self.plan.lock().unwrap();
        let (fault, left) = plan.as_mut()?;
        let fault = *fault;
        *left -= 1;
        if *left == 0 {
            *plan = None;
        }
        self.faulted.fetch_add(1, Ordering::SeqCst);
        Some(fault)
    }

    /// One request per connection (moto answers `Connection: close`): forward it, or answer
    /// it as the fault says, then close.
    async fn serve(&self, mut conn: TcpStream, upstream: &str) -> std::io::Result<()> {
        let request = read_message(&mut conn).await?;
        let is_put = String::from_utf8_lossy(&request).contains("DynamoDB_20120810.PutItem");
        let fault = if is_put { self.take() } else { None };
        let (status, code) = match fault {
            Some(PutFault::Throttle) => ("400 Bad Request", "ThrottlingException"),
            Some(PutFault::LoseReply) => ("500 Internal Server Error", "InternalServerError"),
            Some(PutFault::DropOldItem) => ("400 Bad Request", "ConditionalCheckFailedException"),
            None => ("", ""),
        };
        let mut response = Vec::new();
        if !matches!(fault, Some(PutFault::Throttle)) {
            let mut up = TcpStream::connect(upstream).await?;
            up.write_all(&request).await?;
            up.read_to_end(&mut response).await?;
        }
        let replace = match fault {
            // Only a refusal carries the old item.
            Some(PutFault::DropOldItem) => {
                String::from_utf8_lossy(&response).contains("ConditionalCheckFailed")
            }
            Some(PutFault::LoseReply | PutFault::Throttle) => true,
            None => false,
        };
        if replace {
            let body = format!(
                r#"{{"__type":"com.amazonaws.dynamodb.v20120810#{code}","message":"injected"}}"#
            );
            response = format!(
                "HTTP/1.1 {status}\r\ncontent-type: application/x-amz-json-1.0\r\n\
                 content-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )
            .into_bytes();
        }
        conn.write_all(&response).await?;
        conn.shutdown().await
    }
}

/// A request: its head, and as much body as its `content-length` says.
async fn read_message(conn: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let mut wanted = None;
    loop {
        if wanted.is_none()
            && let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n")
        {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            wanted = Some(end + 4 + length);
        }
        if wanted.is_some_and(|n| buf.len() >= n) {
            return Ok(buf);
        }
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Ok(buf);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}
