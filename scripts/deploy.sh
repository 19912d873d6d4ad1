#!/usr/bin/env bash
# Builds keyrot's two Lambda functions, uploads them to S3, creates or updates the CloudFormation
# stack (cfn/template.yaml) and registers the stack's API key as a client of the keyrot API.
# Needs the AWS CLI with credentials for the target account, cargo, and Python 3 (for the pinned
# cargo-lambda in keyrot's venv). README.md ("Deploying to AWS") walks through a first deployment.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  cat <<'EOF'
Usage: scripts/deploy.sh --bucket BUCKET [options]

First deployment (all of these are needed; later runs keep the stack's previous values):
  --bucket BUCKET          S3 bucket for the Lambda zips, in the stack's region (required every time)
  --alert-from ADDRESS     SES identity the rotator sends notifications from
  --admin-email ADDRESS    administrator: notifications (SES) and alarms (SNS)
  --allowed-cidrs LIST     comma-separated CIDRs that may call the API at all
  --client-scope LIST      users the registered client may fetch, comma-separated, or '*'

Options:
  --stack NAME             stack name (default: keyrot)
  --region REGION          AWS region (default: the AWS CLI's)
  --prefix PREFIX          S3 key prefix for the zips (default: keyrot/)
  --architecture ARCH      x86_64 or arm64 (needs the aarch64 Rust target); default: the
                           stack's current Architecture, or x86_64 for a new stack
  --client-id ID           id of the client the API key is registered as (default: default)
  --client-cidrs LIST      CIDRs this client may call from (default: --allowed-cidrs, or the
                           stack's AllowedCidrs)
  --api-key-id ID           register this API Gateway key (already in the stack's usage plan)
                           instead of the stack's own
  --no-client              do not touch the client registry
  --parameter KEY=VALUE    any other template parameter (repeatable), e.g. ScheduleExpression=rate(6 hours)
  --skip-build             deploy the release zips already built for the architecture
                           (lambda/release-<arch>/); fails if they are missing
  --register-only          only register the client (needs an existing stack): no build, no
                           upload, no stack update, so the functions' code stays as it is;
                           --bucket is not needed
  -h, --help               this text

Environment: CARGO_TARGET_DIR (default ~/.cache/keyrot/target; the zips go to its
lambda/release-<arch>/ folder).
EOF
}

die() { printf 'deploy.sh: %s\n' "$*" >&2; exit 1; }
say() { printf '\n==> %s\n' "$*"; }

stack=keyrot
region=""
bucket=""
prefix="keyrot/"
architecture=""
client_id=default
client_scope=""
client_cidrs=""
allowed_cidrs=""
client_key_id=""
register_client=true
build=true
register_only=false
overrides=()

while [ $# -gt 0 ]; do
  case "$1" in
    --bucket) bucket="${2:?--bucket needs a value}"; shift 2 ;;
    --alert-from) overrides+=("AlertFromEmail=${2:?--alert-from needs a value}"); shift 2 ;;
    --admin-email) overrides+=("AdminEmail=${2:?--admin-email needs a value}"); shift 2 ;;
    --allowed-cidrs) allowed_cidrs="${2:?--allowed-cidrs needs a value}"; overrides+=("AllowedCidrs=$allowed_cidrs"); shift 2 ;;
    --client-scope) client_scope="${2:?--client-scope needs a value}"; shift 2 ;;
    --client-id) client_id="${2:?--client-id needs a value}"; shift 2 ;;
    --client-cidrs) client_cidrs="${2:?--client-cidrs needs a value}"; shift 2 ;;
    --api-key-id) client_key_id="${2:?--api-key-id needs a value}"; shift 2 ;;
    --no-client) register_client=false; shift ;;
    --stack) stack="${2:?--stack needs a value}"; shift 2 ;;
    --region) region="${2:?--region needs a value}"; shift 2 ;;
    --prefix) prefix="${2:?--prefix needs a value}"; shift 2 ;;
    --architecture) architecture="${2:?--architecture needs a value}"; shift 2 ;;
    --parameter) overrides+=("${2:?--parameter needs KEY=VALUE}"); shift 2 ;;
    --skip-build) build=false; shift ;;
    --register-only) register_only=true; build=false; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done

$register_only || [ -n "$bucket" ] || { usage >&2; die "--bucket is required"; }
if $register_only; then
  $register_client || die "--register-only and --no-client leave nothing to do"
  if [ -n "$architecture" ] || [ ${#overrides[@]} -gt 0 ]; then
    die "--register-only changes no stack parameter (drop --architecture and the parameter options)"
  fi
fi
case "$architecture" in
  "" | x86_64 | arm64) ;;
  *) die "--architecture must be x86_64 or arm64" ;;
esac
case "$prefix" in */ | "") ;; *) prefix="$prefix/" ;; esac
command -v aws >/dev/null || die "the AWS CLI (aws) is needed"

aws_() {
  if [ -n "$region" ]; then aws --region "$region" "$@"; else aws "$@"; fi
}

venv="$(./scripts/venv.sh)"
target_dir="${CARGO_TARGET_DIR:-$HOME/.cache/keyrot/target}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
chmod 700 "$tmp"

# ------------------------------------------------------------------ before the build
existed=false
# Only "does not exist" means there is no stack; any other error (credentials, throttling,
# region) stops here. A stack in REVIEW_IN_PROGRESS is an empty shell left by a change set
# that was never executed: `aws cloudformation deploy` creates over it, so it counts as absent.
if status="$(aws_ cloudformation describe-stacks --stack-name "$stack" --query 'Stacks[0].StackStatus' \
  --output text 2>"$tmp/describe.err")"; then
  :
elif grep -q 'does not exist' "$tmp/describe.err"; then
  status=""
else
  cat "$tmp/describe.err" >&2
  die "could not look up stack $stack (the AWS error is above)"
fi
case "$status" in
  "" | REVIEW_IN_PROGRESS) ;;
  ROLLBACK_COMPLETE | ROLLBACK_FAILED | DELETE_FAILED)
    die "stack $stack is $status: look at its events, remove it (scripts/teardown.sh --stack $stack) and deploy again" ;;
  *_IN_PROGRESS) die "stack $stack is busy ($status); wait for it to finish" ;;
  *) existed=true ;;
esac
parameter() {
  aws_ cloudformation describe-stacks --stack-name "$stack" \
    --query "Stacks[0].Parameters[?ParameterKey=='$1'].ParameterValue" --output text
}
if $register_only && ! $existed; then
  die "--register-only needs an existing stack; there is no stack $stack"
fi
if [ -z "$architecture" ]; then
  # Keep the architecture the stack runs on: the zips are built for it, and the parameter is
  # passed again unchanged.
  architecture=x86_64
  if $existed; then
    current="$(parameter Architecture)"
    case "$current" in
      x86_64 | arm64) architecture="$current" ;;
      "" | None) ;;
      *) die "stack $stack has Architecture=$current; pass --architecture x86_64 or arm64" ;;
    esac
  fi
fi
if ! $existed; then
  for needed in AlertFromEmail AdminEmail AllowedCidrs; do
    printf '%s\n' ${overrides[@]+"${overrides[@]}"} | grep -q "^$needed=" \
      || die "a new stack needs --alert-from, --admin-email and --allowed-cidrs ($needed is missing)"
  done
  if $register_client && [ -z "$client_scope" ]; then
    die "a new stack needs --client-scope for its first client (or --no-client)"
  fi
fi

if ! $register_only; then
  # ------------------------------------------------------------------ build
  # Only release zips of the stack's architecture are deployed: build-lambda.sh keeps each
  # profile/architecture in its own folder (scripts/test.sh's dev builds go to dev-<arch>/).
  lambda_dir="$target_dir/lambda/release-$architecture"
  if $build; then
    say "building keyrot-rotate and keyrot-api for $architecture (cargo lambda, glibc of provided.al2023)"
    # Also checks that neither binary needs a newer glibc than the runtime's.
    lambda_dir="$(CARGO_TARGET_DIR="$target_dir" ./scripts/build-lambda.sh --release --arch "$architecture")"
  fi
  rotate_zip="$lambda_dir/keyrot-rotate/bootstrap.zip"
  api_zip="$lambda_dir/keyrot-api/bootstrap.zip"
  for zip in "$rotate_zip" "$api_zip"; do
    if [ ! -f "$zip" ]; then
      $build && die "scripts/build-lambda.sh left no $zip"
      die "--skip-build: no release build for $architecture ($zip is missing); run without --skip-build, or scripts/build-lambda.sh --release --arch $architecture first"
    fi
  done

  # ------------------------------------------------------------------ upload
  # Content-addressed keys: CloudFormation updates a function's code only when its S3 key changes.
  sha() { sha256sum "$1" | cut -d ' ' -f 1; }
  rotate_key="${prefix}$(sha "$rotate_zip")/keyrot-rotate.zip"
  api_key_object="${prefix}$(sha "$api_zip")/keyrot-api.zip"
  say "uploading to s3://$bucket/$prefix"
  aws_ s3 cp --only-show-errors "$rotate_zip" "s3://$bucket/$rotate_key"
  aws_ s3 cp --only-show-errors "$api_zip" "s3://$bucket/$api_key_object"
  overrides+=(
    "CodeBucket=$bucket"
    "RotateCodeKey=$rotate_key"
    "ApiCodeKey=$api_key_object"
    "Architecture=$architecture"
  )

  # ------------------------------------------------------------------ stack
  if $existed; then say "updating stack $stack"; else say "creating stack $stack"; fi
  # A template body over 51,200 bytes has to go through S3.
  template_args=()
  if [ "$(wc -c <cfn/template.yaml)" -gt 51200 ]; then
    template_args=(--s3-bucket "$bucket" --s3-prefix "${prefix}cfn")
  fi
  # `deploy` creates or updates through a change set, waits for it, keeps the previous value of
  # every parameter not given here, and with --no-fail-on-empty-changeset treats "no updates" as
  # success.
  deploy_log="$tmp/deploy.log"
  # stderr goes to a file first, then to the terminal: bash does not wait for a `2> >(tee ...)`
  # process substitution, so the grep below could read the log before it is complete.
  if ! aws_ cloudformation deploy \
    --stack-name "$stack" \
    --template-file cfn/template.yaml \
    --capabilities CAPABILITY_NAMED_IAM \
    --no-fail-on-empty-changeset \
    ${template_args[@]+"${template_args[@]}"} \
    --parameter-overrides "${overrides[@]}" 2>"$deploy_log"; then
    cat "$deploy_log" >&2
    # Some endpoints refuse an empty change set outright instead of creating a FAILED one.
    grep -q 'No updates are to be performed' "$deploy_log" \
      || die "the stack did not deploy; see: aws cloudformation describe-stack-events --stack-name $stack"
    echo "no changes to the stack"
  else
    cat "$deploy_log" >&2
  fi
fi

output() {
  aws_ cloudformation describe-stacks --stack-name "$stack" \
    --query "Stacks[0].Outputs[?OutputKey=='$1'].OutputValue" --output text
}
endpoint="$(output ApiEndpoint)"
api_key_id="$(output ApiKeyId)"
clients_secret="$(output ClientsSecretArn)"
rest_api_id="$(output RestApiId)"
stage="$(output StageName)"

if $existed && ! $register_only; then
  # CloudFormation does not redeploy a REST API whose methods or policy changed: do it here.
  say "redeploying the API's stage $stage"
  aws_ apigateway create-deployment --rest-api-id "$rest_api_id" --stage-name "$stage" \
    --description "scripts/deploy.sh" >/dev/null
fi

# ------------------------------------------------------------------ client registry
if $register_client; then
  say "registering the API key ${client_key_id:-$api_key_id} as client '$client_id' in the client registry"
  # A new client may call from the API's allowlist unless --client-cidrs narrows it; an existing
  # one keeps its own list unless --client-cidrs replaces it.
  default_cidrs="${allowed_cidrs:-$(parameter AllowedCidrs)}"
  [ "$default_cidrs" = None ] && default_cidrs=""
  workdir="$tmp"
  # The key's value goes from the AWS CLI into the digest only: never an argument, a file or output
  # (printf is a shell builtin, so the value is not on any command line).
  client_key_id="${client_key_id:-$api_key_id}"
  key_value="$(aws_ apigateway get-api-key --api-key "$client_key_id" --include-value --query value --output text)" \
    || die "could not read the API key $client_key_id"
  case "$key_value" in
    "" | None) die "the API key $client_key_id has no value (is it an API Gateway key id?)" ;;
  esac
  digest="$(printf '%s' "$key_value" | sha256sum | cut -d ' ' -f 1)"
  unset key_value
  [ "${#digest}" -eq 64 ] || die "could not hash the API key $client_key_id"
  aws_ secretsmanager get-secret-value --secret-id "$clients_secret" --query SecretString --output text \
    >"$workdir/clients.json"
  CLIENT_ID="$client_id" CLIENT_SCOPE="$client_scope" CLIENT_CIDRS="$client_cidrs" \
    DEFAULT_CIDRS="$default_cidrs" DIGEST="$digest" \
    "$venv/bin/python" - "$workdir/clients.json" <<'PY'
import ipaddress, json, os, re, sys

# The rules of keyrot's ClientRegistry::from_json (keyrot-core/src/token.rs), which refuses the
# whole registry for one bad entry and so would stop every new API instance: check the registry
# as it will be written, and change nothing if it would not load.
def fail(msg):
    sys.exit(f"deploy.sh: {msg}; the client registry was not changed")

def client_id_ok(s):
    return isinstance(s, str) and re.fullmatch(r"[a-z0-9._-]{1,64}", s) is not None

def user_name_ok(s):
    return re.fullmatch(r"[A-Za-z0-9+=,.@_-]{1,64}", s) is not None

def check_scope(where, scope):
    if not isinstance(scope, list) or not all(isinstance(x, str) for x in scope):
        fail(f"{where}: scope must be a list of IAM user names, or ['*']")
    if not scope:
        fail(f"{where}: scope is empty; list IAM user names, or '*' for every managed user")
    for entry in scope:
        if entry != "*" and not user_name_ok(entry):
            fail(f"{where}: scope entry {entry[:64]!r} is not an IAM user name (1 to 64 of A-Z a-z 0-9 + = , . @ _ -) or '*'")
    if "*" in scope and any(e != "*" for e in scope):
        fail(f"{where}: scope mixes '*' with user names; use '*' alone or list the users")
    users = sorted(set(scope) - {"*"})
    if users and sum(len(u) + 1 for u in users) - 1 > 2048:
        fail(f"{where}: scope is longer than 2048 bytes written out")

def normalise_cidr(where, value):
    """A CIDR block as keyrot parses it (ipnet, no host bits); a bare address becomes /32 or /128."""
    if not isinstance(value, str):
        fail(f"{where}: allowed_cidrs entry {value!r} is not a string")
    text = value.strip()
    try:
        if "/" not in text and "%" not in text:
            return str(ipaddress.ip_network(ipaddress.ip_address(text)))
        addr, _, prefix = text.partition("/")
        if "%" in addr or not re.fullmatch(r"0|[1-9][0-9]{0,2}", prefix):
            raise ValueError("not address/prefix-length")
        ipaddress.ip_address(addr)
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        fail(f"{where}: {value[:64]!r} is not a CIDR block such as 10.0.0.0/8 or 2001:db8::/32 (or one address, 10.0.0.1)")
    if str(net.network_address) != str(ipaddress.ip_address(addr)):
        fail(f"{where}: {text} has host bits set; did you mean {net}?")
    return str(net)

def check_registry(registry):
    if not isinstance(registry, dict) or set(registry) != {"clients"} or not isinstance(registry["clients"], list):
        fail('the registry is not of the form {"clients": [...]}; fix the secret by hand')
    ids, digests = {}, {}
    for index, c in enumerate(registry["clients"]):
        where = f"clients[{index}]"
        fields = {"id", "api_key_sha256", "scope", "allowed_cidrs"}
        if not isinstance(c, dict) or set(c) != fields:
            fail(f"{where}: needs exactly the fields {sorted(fields)}")
        if not client_id_ok(c["id"]):
            fail(f"{where}: id {str(c['id'])[:64]!r} is not valid; use 1 to 64 of a-z 0-9 . _ -")
        where = f"{where} ({c['id']})"
        if c["id"] in ids:
            fail(f"{where}: id is already used by clients[{ids[c['id']]}]")
        ids[c["id"]] = index
        digest = c["api_key_sha256"]
        if not isinstance(digest, str) or re.fullmatch(r"[0-9a-fA-F]{64}", digest) is None:
            fail(f"{where}: api_key_sha256 is not 64 hex digits")
        if digest.lower() in digests:
            fail(f"{where}: has the same API key as client {digests[digest.lower()]}; give each client its own API key")
        digests[digest.lower()] = c["id"]
        check_scope(where, c["scope"])
        if not isinstance(c["allowed_cidrs"], list) or not c["allowed_cidrs"]:
            fail(f"{where}: allowed_cidrs is empty; list the client's networks")
        for value in c["allowed_cidrs"]:
            normalise_cidr(f"{where}: allowed_cidrs", value)

path = sys.argv[1]
try:
    with open(path) as f:
        registry = json.load(f)
except ValueError as e:
    fail(f"the client registry secret is not JSON ({e}); fix it by hand")
split = lambda s: [x.strip() for x in s.split(",") if x.strip()]
client_id = os.environ["CLIENT_ID"]
if not client_id_ok(client_id):
    fail(f"--client-id {client_id[:64]!r} is not valid; use 1 to 64 of a-z 0-9 . _ -")
scope = split(os.environ["CLIENT_SCOPE"])
if os.environ["CLIENT_SCOPE"] and not scope:
    fail("--client-scope lists no user")
if scope:
    check_scope("--client-scope", scope)
cidrs = [normalise_cidr("--client-cidrs", c) for c in split(os.environ["CLIENT_CIDRS"])]
if os.environ["CLIENT_CIDRS"] and not cidrs:
    fail("--client-cidrs lists no CIDR block")
if isinstance(registry, dict):
    registry.setdefault("clients", [])
clients = registry.get("clients") if isinstance(registry, dict) else None
entry = next((c for c in clients if isinstance(c, dict) and c.get("id") == client_id), None) \
    if isinstance(clients, list) else None
if entry is None and isinstance(clients, list):
    if not scope:
        fail("a new client needs --client-scope (user names, comma-separated, or '*')")
    if not cidrs:
        where = "the stack's AllowedCidrs (the new client's default allowed_cidrs)"
        cidrs = [normalise_cidr(where, c) for c in split(os.environ["DEFAULT_CIDRS"])]
        if not cidrs:
            fail("the new client has no allowed_cidrs: pass --client-cidrs")
    entry = {"id": client_id, "api_key_sha256": None, "scope": scope, "allowed_cidrs": cidrs}
    clients.append(entry)
if entry is not None:
    entry["api_key_sha256"] = os.environ["DIGEST"]
    if scope:
        entry["scope"] = scope
    if cidrs:
        entry["allowed_cidrs"] = cidrs
check_registry(registry)
with open(path, "w") as f:
    json.dump(registry, f, indent=2)
print(f"client {entry['id']}: scope {entry['scope']}, allowed from {entry['allowed_cidrs']}")
PY
  aws_ secretsmanager put-secret-value --secret-id "$clients_secret" \
    --secret-string "file://$workdir/clients.json" >/dev/null
fi

# ------------------------------------------------------------------ how to use it
user="${client_scope%%,*}"
case "$user" in "" | "*") user=deployer ;; esac
cat <<EOF

keyrot is deployed: $endpoint

Get the API key (it is in no output and no file; keep it out of your shell history):
  export KEYROT_API_KEY="\$(aws apigateway get-api-key --api-key ${client_key_id:-$api_key_id} --include-value --query value --output text)"

Fetch the current key of user $user (keyrot reads the API key from the environment):
  keyrot get-key --endpoint $endpoint --username $user

Or with curl (in bash; the headers come from a file, so no secret shows in \`ps\`):
  TOKEN="\$(curl -sS -X POST -H @<(printf 'x-api-key: %s\\n' "\$KEYROT_API_KEY") $endpoint/generate-token \\
      | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')"
  curl -sS -H @<(printf 'x-api-key: %s\\nAuthorization: Bearer %s\\n' "\$KEYROT_API_KEY" "\$TOKEN") \\
      "$endpoint/active-key?username=$user"

Let the AWS CLI and SDKs pick up rotated keys by themselves (~/.aws/config):
  [profile $user]
  credential_process = keyrot credential-process --endpoint $endpoint --api-key-env KEYROT_API_KEY --username $user

Health check (no key needed, allowlisted addresses only): curl -sS $endpoint/health
The rotator runs on its schedule; run it now with:
  aws lambda invoke --function-name $(output RotateFunctionName) --invocation-type Event /dev/null
keyrot rotate and keyrot serve beside it claim users in the stack's lease table, so that no two
runs act on one user at once (keyrot-leases, the default, is the table of a stack named keyrot):
  export KEYROT_LEASE_TABLE=$(output LeaseTableName)
EOF
