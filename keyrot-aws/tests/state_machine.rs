//! The many-accounts state machine (cfn/template.yaml's `AccountsStateMachine`) executed by
//! moto's interpreter of the Amazon States Language: `cfn/execute.py`, in keyrot's venv,
//! with the worker's recorded answers (its docstring says what moto runs and what not).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

#[test]
fn the_accounts_state_machine_runs_in_moto() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let venv = Command::new(root.join("scripts/venv.sh")).output().unwrap();
    assert!(venv.status.success(), "scripts/venv.sh: {venv:?}");
    let python = Path::new(String::from_utf8(venv.stdout).unwrap().trim()).join("bin/python");
    let run = Command::new(python)
        .arg("cfn/execute.py")
        .arg("cfn/template.yaml")
        .current_dir(&root)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success() && stdout.contains("ran in moto (2 executions)"),
        "{}\n{stdout}\n{}",
        run.status,
        String::from_utf8_lossy(&run.stderr)
    );
}
