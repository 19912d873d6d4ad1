//! A function binary as a child process, and what it prints.

use super::*;

// ------------------------------------------------------------------ the function's process

#[derive(Default)]
struct Output {
    stdout: Vec<String>,
    stderr: Vec<String>,
    stdout_closed: bool,
}

/// A function binary running against a [`RuntimeApi`]; killed when dropped.
pub(crate) struct Function {
    child: Child,
    output: Arc<(Mutex<Output>, Condvar)>,
}

impl Function {
    /// Starts `binary` with `RUST_LOG=info`, the Lambda variables and `env`, in which an empty
    /// value removes a variable.
    pub(crate) fn start(binary: &str, runtime: &RuntimeApi, env: &[(&str, String)]) -> Self {
        let mut command = Command::new(binary);
        command
            .env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", runtime.host_port())
            .env("AWS_LAMBDA_FUNCTION_NAME", "keyrot-test")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/keyrot-test")
            .env(
                "AWS_LAMBDA_LOG_STREAM_NAME",
                "2025/06/01/[$LATEST]0123456789abcdef",
            )
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (name, value) in env {
            if value.is_empty() {
                command.env_remove(name);
            } else {
                command.env(name, value);
            }
        }
        let mut child = command.spawn().unwrap();
        let output = Arc::new((Mutex::new(Output::default()), Condvar::new()));
        let stdout = child.stdout.take().unwrap();
        let shared = Arc::clone(&output);
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                shared.0.lock().unwrap().stdout.push(line);
                shared.1.notify_all();
            }
            shared.0.lock().unwrap().stdout_closed = true;
            shared.1.notify_all();
        });
        let stderr = child.stderr.take().unwrap();
        let shared = Arc::clone(&output);
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                shared.0.lock().unwrap().stderr.push(line);
            }
        });
        Self { child, output }
    }

    /// Everything the process printed so far, for a failure message.
    pub(crate) fn output(&mut self) -> String {
        let exited = self.child.try_wait().ok().flatten();
        let out = self.output.0.lock().unwrap();
        format!(
            "exit: {exited:?}\n--- stdout\n{}\n--- stderr\n{}",
            out.stdout.join("\n"),
            out.stderr.join("\n")
        )
    }

    /// Waits for a stdout line that `matches`, and returns it.
    pub(crate) fn wait_line(&mut self, matches: impl Fn(&str) -> bool) -> String {
        let found = {
            let guard = self.output.0.lock().unwrap();
            let (guard, _) = self
                .output
                .1
                .wait_timeout_while(guard, TIMEOUT, |o| {
                    !o.stdout_closed && !o.stdout.iter().any(|l| matches(l))
                })
                .unwrap();
            guard.stdout.iter().find(|l| matches(l)).cloned()
        };
        found.unwrap_or_else(|| panic!("no such line\n{}", self.output()))
    }

    /// The EMF metric lines printed so far.
    pub(crate) fn metric_lines(&self) -> Vec<Value> {
        let out = self.output.0.lock().unwrap();
        out.stdout
            .iter()
            .filter(|l| l.contains("\"_aws\""))
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Waits for the process to end by itself (it closes its stdout first).
    pub(crate) fn wait_exit(&mut self) -> ExitStatus {
        let closed = {
            let guard = self.output.0.lock().unwrap();
            let (guard, _) = self
                .output
                .1
                .wait_timeout_while(guard, TIMEOUT, |o| !o.stdout_closed)
                .unwrap();
            guard.stdout_closed
        };
        assert!(closed, "the process did not exit\n{}", self.output());
        self.child.wait().unwrap()
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
