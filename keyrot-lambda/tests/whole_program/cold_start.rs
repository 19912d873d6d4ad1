//! Both functions at a cold start with a bad configuration.

use super::*;

#[test]
fn a_bad_configuration_is_an_init_error_not_a_silent_crash() {
    for (binary, env, error_type, message) in [
        (
            env!("CARGO_BIN_EXE_keyrot-rotate"),
            vec![
                ("KEYROT_LEASE_TABLE", LEASE_TABLE.to_owned()),
                ("KEYROT_GRACE_PERIOD", "1 week".to_owned()),
            ],
            "keyrot.NotRetryable.Config",
            "KEYROT_GRACE_PERIOD: \"1 week\" is not a duration",
        ),
        (
            env!("CARGO_BIN_EXE_keyrot-rotate"),
            vec![],
            "keyrot.NotRetryable.Config",
            "KEYROT_LEASE_TABLE is required but not set",
        ),
        (
            env!("CARGO_BIN_EXE_keyrot-api"),
            vec![("KEYROT_CLIENTS_SECRET", "keyrot/api/clients".to_owned())],
            "keyrot.NotRetryable.Config",
            "invalid configuration: KEYROT_SIGNING_KEY_SECRET is required but not set",
        ),
    ] {
        let runtime = RuntimeApi::start();
        let mut function = Function::start(binary, &runtime, &env);
        let report = runtime.wait_for(&mut function, |r| r.kind == "init-error");
        assert_eq!(report.error_type.as_deref(), Some(error_type), "{report:?}");
        let body = report.json();
        assert_eq!(body["errorType"], error_type);
        assert!(
            body["errorMessage"].as_str().unwrap().starts_with(message),
            "{binary}: {body}"
        );
        let status = function.wait_exit();
        assert!(!status.success(), "{binary} exited with {status}");
        // Logged too, as JSON.
        function.wait_line(|l| l.contains("cold start failed") && l.starts_with('{'));
    }
}
