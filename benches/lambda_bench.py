"""Runs Lambda bootstraps under a fake Lambda Runtime API on 127.0.0.1 and reports, per binary,
its zip and bootstrap size, its init time (process start to its first
`GET /2018-06-01/runtime/invocation/next`, median of N runs) and its peak RSS (VmHWM after
one invocation). Started by benches/lambda.sh, which builds the zips and starts moto; see there.

Usage: lambda_bench.py RUNS MOTO_ENDPOINT NAME=ZIP...
"""

import http.server
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
import hashlib

import boto3

REGION = "us-east-1"
SIGNING_KEY_SECRET = "keyrot-bench/signing-key"
CLIENTS_SECRET = "keyrot-bench/clients"
LEASE_TABLE = "keyrot-bench-leases"
HERE = os.path.dirname(os.path.abspath(__file__))
HEALTH = os.path.join(HERE, "..", "keyrot-lambda", "tests", "fixtures", "apigw-rest-health.json")
# How long one run may take before the bench gives up (moto's first call to a service is slow).
TIMEOUT = 60


class Run:
    """One process's exchange with the Runtime API."""

    def __init__(self, event):
        self.event = event
        self.first_next = None
        self.handed_out = False
        self.waiting = False
        self.response = None
        self.error = None
        self.done = threading.Condition()


class RuntimeApi(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.run = None

    def handle_error(self, request, client_address):
        # A process killed while it waits for its next event resets its connection.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        now = time.monotonic()
        run = self.server.run
        if self.path != "/2018-06-01/runtime/invocation/next" or run is None:
            return self.answer(404, b"{}")
        with run.done:
            if run.first_next is None:
                run.first_next = now
            if run.handed_out:
                # The second `next`: the invocation is over, the process waits here until the
                # bench kills it (so no late request of it can fall into the next run).
                run.waiting = True
                run.done.notify_all()
                run.done.wait(TIMEOUT)
                return
            run.handed_out = True
        body = json.dumps(run.event).encode()
        deadline = int(time.time() * 1000) + 30_000
        self.send_response(200)
        for name, value in [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("Lambda-Runtime-Aws-Request-Id", "bench-1"),
            ("Lambda-Runtime-Deadline-Ms", str(deadline)),
            ("Lambda-Runtime-Invoked-Function-Arn",
             "arn:aws:lambda:us-east-1:123456789012:function:keyrot-bench"),
            ("Lambda-Runtime-Trace-Id", "Root=1-5759e988-bd862e3fe1be46a994272793"),
        ]:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        run = self.server.run
        if run is not None:
            # Recorded before the answer: the process asks for its next event at once.
            with run.done:
                if self.path.endswith("/response"):
                    run.response = body
                else:
                    run.error = (self.path, body)
                run.done.notify_all()
        self.answer(202, b"{}")

    def answer(self, status, body):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def deploy(moto):
    """The API's secrets and the rotator's lease table in moto."""
    session = dict(region_name=REGION, endpoint_url=moto,
                   aws_access_key_id="bench", aws_secret_access_key="bench")
    secrets = boto3.client("secretsmanager", **session)
    registry = {"clients": [{
        "id": "bench",
        "api_key_sha256": hashlib.sha256(b"bench-api-key").hexdigest(),
        "scope": ["bench-user"],
        "allowed_cidrs": ["52.255.255.0/24"],
    }]}
    for name, value in [
        (SIGNING_KEY_SECRET, {"kid": "k1", "secret": "0123456789abcdefghijABCDEFGHIJ0123456789"}),
        (CLIENTS_SECRET, registry),
    ]:
        try:
            secrets.create_secret(Name=name, SecretString=json.dumps(value))
        except secrets.exceptions.ResourceExistsException:
            pass
    dynamodb = boto3.client("dynamodb", **session)
    try:
        dynamodb.create_table(
            TableName=LEASE_TABLE,
            AttributeDefinitions=[{"AttributeName": "user", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "user", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
    except dynamodb.exceptions.ResourceInUseException:
        pass


def environment(runtime, moto, home, name):
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": home,
        "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{runtime.server_address[1]}",
        "AWS_LAMBDA_FUNCTION_NAME": "keyrot-bench",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/keyrot-bench",
        "AWS_LAMBDA_LOG_STREAM_NAME": "2025/06/01/[$LATEST]0123456789abcdef",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_REGION": REGION,
        "AWS_ENDPOINT_URL": moto,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
    }
    if os.environ.get("SSL_CERT_FILE"):
        env["SSL_CERT_FILE"] = os.environ["SSL_CERT_FILE"]
    if name == "keyrot-api":
        env.update(KEYROT_SIGNING_KEY_SECRET=SIGNING_KEY_SECRET,
                   KEYROT_CLIENTS_SECRET=CLIENTS_SECRET,
                   KEYROT_SECRET_PREFIX="keyrot-bench/users/")
    if name == "keyrot-rotate":
        env.update(KEYROT_LEASE_TABLE=LEASE_TABLE, KEYROT_SECRET_PREFIX="keyrot-bench/users/")
    return env


def event_for(name):
    if name == "keyrot-api":
        with open(HEALTH) as f:
            return json.load(f)
    if name == "keyrot-rotate":
        return {"source": "aws.scheduler", "detail-type": "Scheduled Event", "detail": {}}
    return {"hello": "world"}


def peak_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmHWM for {pid}")


def once(runtime, binary, env, name, log):
    run = Run(event_for(name))
    runtime.run = run
    started = time.monotonic()
    process = subprocess.Popen([binary], env=env, stdin=subprocess.DEVNULL,
                               stdout=log, stderr=log)
    try:
        with run.done:
            if not run.done.wait_for(lambda: run.waiting or run.error, TIMEOUT):
                raise RuntimeError(f"{name}: no response within {TIMEOUT} s (see {log.name})")
        if run.error or not run.response:
            raise RuntimeError(f"{name}: {run.error} (see {log.name})")
        status = json.loads(run.response).get("statusCode")
        if name == "keyrot-api" and status != 200:
            raise RuntimeError(f"{name} answered {run.response!r} (see {log.name})")
        rss = peak_rss_kib(process.pid)
    finally:
        process.kill()
        process.wait()
        with run.done:
            run.done.notify_all()
        runtime.run = None
    return run.first_next - started, rss


def main():
    runs, moto = int(sys.argv[1]), sys.argv[2]
    zips = [arg.split("=", 1) for arg in sys.argv[3:]]
    deploy(moto)
    runtime = RuntimeApi()
    threading.Thread(target=runtime.serve_forever, daemon=True).start()
    work = tempfile.mkdtemp(prefix="keyrot-lambda-bench-")
    home = os.path.join(work, "home")
    os.makedirs(home)
    binaries = {}
    for name, path in zips:
        with zipfile.ZipFile(path) as z:
            z.extract("bootstrap", os.path.join(work, name))
        binary = os.path.join(work, name, "bootstrap")
        os.chmod(binary, 0o755)
        binaries[name] = binary
    inits = {name: [] for name, _ in zips}
    rss = {name: [] for name, _ in zips}
    # One warm-up round (page cache, moto's first call to each service), then the runs,
    # interleaved so that a busy moment of the machine falls on every binary alike.
    for round_ in range(runs + 1):
        # Each round starts with the next binary, so none always follows the same one.
        shift = round_ % len(zips)
        for name, _ in zips[shift:] + zips[:shift]:
            with open(os.path.join(work, f"{name}.log"), "w") as log:
                init, peak = once(runtime, binaries[name],
                                  environment(runtime, moto, home, name), name, log)
            if round_ > 0:
                inits[name].append(init)
                rss[name].append(peak)
    hello = statistics.median(inits["lambda-hello"]) if "lambda-hello" in inits else None
    hello_min = min(inits["lambda-hello"]) if hello else None
    mib = 1024 * 1024
    print(f"| binary | zip | bootstrap | init, median of {runs} (min-max) | vs hello world (min vs min) "
          f"| peak RSS (max) | targets: 8 MiB, 1.1x, 32 MB |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, path in zips:
        init = statistics.median(inits[name])
        size = os.path.getsize(binaries[name])
        peak = max(rss[name]) * 1024
        missed = [what for what, over in [
            ("size", size > 8 * mib),
            ("init", hello is not None and init > 1.1 * hello),
            ("RSS", peak > 32_000_000),
        ] if over]
        ratio = f"{init / hello:.2f}x ({min(inits[name]) / hello_min:.2f}x)" if hello else "-"
        print(f"| {name} | {os.path.getsize(path) / mib:.1f} MiB | {size / mib:.1f} MiB "
              f"| {init * 1000:.1f} ms ({min(inits[name]) * 1000:.1f}-{max(inits[name]) * 1000:.1f}) "
              f"| {ratio} | {peak / 1e6:.1f} MB | {'met' if not missed else 'missed: ' + ', '.join(missed)} |")

if __name__ == "__main__":
    main()
