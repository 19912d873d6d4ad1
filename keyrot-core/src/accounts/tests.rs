use std::cell::RefCell;
use std::collections::BTreeMap;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::*;

fn id(s: &str) -> AccountId {
    AccountId::new(s).unwrap()
}

fn ou(s: &str) -> OuId {
    OuId::new(s).unwrap()
}

fn target(s: &str) -> Target {
    s.parse().unwrap()
}

/// root r-ab12 > ou-ab12-aaaaaaaa (first) > ou-ab12-bbbbbbbb (nested); 1 and 2 in first, 3 in
/// nested, 4 at the root, 5 suspended at the root.
fn inventory() -> Vec<OrgAccount> {
    let root = ou("r-ab12");
    let first = ou("ou-ab12-aaaaaaaa");
    let nested = ou("ou-ab12-bbbbbbbb");
    let account = |n: char, active, path: &[&OuId]| OrgAccount {
        id: id(&n.to_string().repeat(12)),
        active,
        path: path.iter().map(|p| (*p).clone()).collect(),
    };
    vec![
        account('1', true, &[&root, &first]),
        account('2', true, &[&root, &first]),
        account('3', true, &[&root, &first, &nested]),
        account('4', true, &[&root]),
        account('5', false, &[&root]),
    ]
}

fn chosen(include: &[&str], exclude: &[&str], exempt: &[&str]) -> (String, String) {
    let scope = AccountScope {
        include: include.iter().map(|s| target(s)).collect(),
        exclude: exclude.iter().map(|s| target(s)).collect(),
        exempt: exempt.iter().map(|s| id(s)).collect(),
    };
    let chosen = scope.select(&inventory());
    let digits = |ids: &[AccountId]| -> String {
        ids.iter()
            .map(|a| &a.as_str()[..1])
            .collect::<Vec<_>>()
            .join(",")
    };
    (digits(&chosen.accounts), digits(&chosen.missing))
}

#[test]
fn ids_are_checked() {
    assert!(AccountId::new("123456789012").is_ok());
    for bad in [
        "12345678901",
        "1234567890123",
        "12345678901a",
        "",
        " 23456789012",
    ] {
        assert_eq!(
            AccountId::new(bad).unwrap_err().to_string(),
            format!("{bad:?} is not an account id: write its twelve digits")
        );
    }
    for good in ["r-ab12", "ou-ab12-abcdefgh", "ou-0000-12345678901234567890"] {
        assert!(OuId::new(good).is_ok(), "{good}");
    }
    for bad in [
        "r-ab1",
        "R-ab12",
        "ou-ab12",
        "ou-ab12-abc",
        "ou-AB12-abcdefgh",
        "ab12",
    ] {
        assert!(OuId::new(bad).is_err(), "{bad}");
    }
    assert_eq!(target("111111111111"), Target::Account(id("111111111111")));
    assert_eq!(target("r-ab12"), Target::Ou(ou("r-ab12")));
    let err = "arn:aws:iam::1:root".parse::<Target>().unwrap_err();
    assert!(err.to_string().contains("neither an account id"), "{err}");
}

#[test]
fn the_whole_organization_is_every_active_account() {
    assert_eq!(chosen(&[], &[], &[]), ("1,2,3,4".into(), String::new()));
    assert_eq!(
        chosen(&["r-ab12"], &[], &[]),
        ("1,2,3,4".into(), String::new())
    );
}

#[test]
fn a_unit_holds_its_nested_units() {
    assert_eq!(chosen(&["ou-ab12-aaaaaaaa"], &[], &[]).0, "1,2,3");
    assert_eq!(chosen(&["ou-ab12-bbbbbbbb"], &[], &[]).0, "3");
}

#[test]
fn a_staged_rollout_is_include_then_exclude() {
    // Stage one: the first OU but its nested one.
    assert_eq!(
        chosen(&["ou-ab12-aaaaaaaa"], &["ou-ab12-bbbbbbbb"], &[]).0,
        "1,2"
    );
    // Stage two: the rest.
    assert_eq!(chosen(&[], &["ou-ab12-aaaaaaaa"], &[]).0, "4");
    // A list of accounts, plus an OU.
    assert_eq!(
        chosen(&["444444444444", "ou-ab12-bbbbbbbb"], &[], &[]).0,
        "3,4"
    );
}

#[test]
fn exclusion_and_exemption_win_and_unknown_accounts_are_missing() {
    assert_eq!(
        chosen(&["111111111111"], &["111111111111"], &[]),
        ("".into(), "".into())
    );
    assert_eq!(
        chosen(&["111111111111"], &[], &["111111111111"]),
        ("".into(), "".into())
    );
    assert_eq!(chosen(&[], &[], &["222222222222"]).0, "1,3,4");
    // A suspended or unknown account named in include is reported, not silently dropped.
    assert_eq!(
        chosen(&["555555555555", "999999999999", "444444444444"], &[], &[]),
        ("4".into(), "5,9".into())
    );
}

#[test]
fn only_a_unit_needs_the_tree() {
    let scope = |include: &[&str]| AccountScope {
        include: include.iter().map(|s| target(s)).collect(),
        ..AccountScope::default()
    };
    assert!(!scope(&[]).needs_tree());
    assert!(!scope(&["111111111111"]).needs_tree());
    assert!(scope(&["111111111111", "r-ab12"]).needs_tree());
}

/// A future that is pending once, so that other accounts' work runs meanwhile.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("role denied")]
struct Denied;

#[test]
fn the_fan_out_caps_parallel_accounts_runs_each_once_and_isolates_failures() {
    let accounts: Vec<AccountId> = (1..=9)
        .chain([3, 3, 7])
        .map(|n| id(&format!("{n:012}")))
        .collect();
    // Per account: how many are running now, the most at once overall, and runs per account.
    let running = RefCell::new(BTreeMap::<AccountId, usize>::new());
    let most = RefCell::new(0);
    let runs = RefCell::new(BTreeMap::<AccountId, usize>::new());
    let reports = futures::executor::block_on(for_each_account(&accounts, 3, |account| {
        let (running, most, runs) = (&running, &most, &runs);
        async move {
            {
                let mut now = running.borrow_mut();
                *now.entry(account.clone()).or_default() += 1;
                assert_eq!(now[&account], 1, "two runs at once for {account}");
                let total: usize = now.values().sum();
                let mut most = most.borrow_mut();
                *most = (*most).max(total);
                *runs.borrow_mut().entry(account.clone()).or_default() += 1;
            }
            for _ in 0..3 {
                YieldOnce(false).await;
            }
            *running.borrow_mut().get_mut(&account).unwrap() -= 1;
            if account.as_str().ends_with('4') {
                Err(Denied)
            } else {
                Ok(account.as_str().len())
            }
        }
    }));
    assert_eq!(*most.borrow(), 3, "the cap is reached and kept");
    assert!(
        runs.borrow().values().all(|&n| n == 1),
        "{:?}",
        runs.borrow()
    );
    assert_eq!(reports.len(), 9);
    assert!(reports.windows(2).all(|w| w[0].account < w[1].account));
    for report in &reports {
        match report.account.as_str() {
            "000000000004" => assert_eq!(report.outcome, Err("role denied".to_owned())),
            _ => assert_eq!(report.outcome, Ok(12)),
        }
    }
}

#[test]
fn the_summary_names_each_account_with_its_counts() {
    let at: crate::Timestamp = "2025-06-01T12:00:00Z".parse().unwrap();
    let empty = RunReport {
        started: at,
        users: Vec::new(),
    };
    let reports = vec![
        AccountReport {
            account: id("222222222222"),
            outcome: Err("could not assume the member role: denied".to_owned()),
        },
        AccountReport {
            account: id("111111111111"),
            outcome: Ok(empty),
        },
    ];
    let summary = OrgSummary::of(&reports);
    assert_eq!((summary.total, summary.failed, summary.rotated), (2, 1, 0));
    expect_test::expect![[r#"
        {"accounts":[{"account":"111111111111","outcome":"ok","users":0,"rotated":0,"failed":0},{"account":"222222222222","outcome":"unreachable","users":0,"rotated":0,"failed":0,"error":"could not assume the member role: denied"}],"total":2,"failed":1,"rotated":0}"#]]
    .assert_eq(&serde_json::to_string(&summary).unwrap());
    expect_test::expect![[r#"
        ACCOUNT       OUTCOME      USERS  ROTATED  FAILED
        111111111111  ok               0        0       0
        222222222222  unreachable      0        0       0  could not assume the member role: denied
        2 accounts, 1 failed, 0 users rotated"#]]
    .assert_eq(&summary.to_string());
}
