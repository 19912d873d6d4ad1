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
  --architecture ARCH      x86_64 (default) or arm64 (needs the aarch64 Rust target)
  --client-id ID           id of the client the API key is registered as (default: default)
  --client-cidrs LIST      CIDRs this client may call from (default: --allowed-cidrs, or the
                           stack's AllowedCidrs)
  --api-key-id ID           register this API Gateway key (already in the stack's usage plan)
                           instead of the stack's own
  --no-client              do not touch the client registry
  --parameter KEY=VALUE    any other template parameter (repeatable), e.g. ScheduleExpression=rate(6 hours)
  --skip-build             deploy the zips already built in the lambda directory
  -h, --help               this text

Environment: CARGO_TARGET_DIR (default ~/.cache/keyrot/target; the zips go to its lambda/ folder).
EOF
}

die() { printf 'deploy.sh: %s\n' "$*" >&2; exit 1; }
say() { printf '\n==> %s\n' "$*"; }

stack=keyrot
region=""
bucket=""
prefix="keyrot/"
architecture=x86_64
client_id=default
client_scope=""
client_cidrs=""
allowed_cidrs=""
client_key_id=""
register_client=true
build=true
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
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done

[ -n "$bucket" ] || { usage >&2; die "--bucket is required"; }
case "$architecture" in
  x86_64 | arm64) ;;
  *) die "--architecture must be x86_64 or arm64" ;;
esac
case "$prefix" in */ | "") ;; *) prefix="$prefix/" ;; esac
command -v aws >/dev/null || die "the AWS CLI (aws) is needed"

aws_() {
  if [ -n "$region" ]; then aws --region "$region" "$@"; else aws "$@"; fi
}

venv="$(./scripts/venv.sh)"
target_dir="${CARGO_TARGET_DIR:-$HOME/.cache/keyrot/target}"
lambda_dir="$target_dir/lambda"

# ------------------------------------------------------------------ before the build
existed=false
status="$(aws_ cloudformation describe-stacks --stack-name "$stack" --query 'Stacks[0].StackStatus' \
  --output text 2>/dev/null || true)"
case "$status" in
  "") ;;
  ROLLBACK_COMPLETE | ROLLBACK_FAILED | DELETE_FAILED)
    die "stack $stack is $status: look at its events, remove it (scripts/teardown.sh --stack $stack) and deploy again" ;;
  *_IN_PROGRESS) die "stack $stack is busy ($status); wait for it to finish" ;;
  *) existed=true ;;
esac
if ! $existed; then
  for needed in AlertFromEmail AdminEmail AllowedCidrs; do
    printf '%s\n' ${overrides[@]+"${overrides[@]}"} | grep -q "^$needed=" \
      || die "a new stack needs --alert-from, --admin-email and --allowed-cidrs ($needed is missing)"
  done
  if $register_client && [ -z "$client_scope" ]; then
    die "a new stack needs --client-scope for its first client (or --no-client)"
  fi
fi

# ------------------------------------------------------------------ build
if $build; then
  say "building keyrot-rotate and keyrot-api for $architecture (cargo lambda, glibc of provided.al2023)"
  # Also checks that neither binary needs a newer glibc than the runtime's.
  lambda_dir="$(CARGO_TARGET_DIR="$target_dir" ./scripts/build-lambda.sh --release --arch "$architecture")"
fi
rotate_zip="$lambda_dir/keyrot-rotate/bootstrap.zip"
api_zip="$lambda_dir/keyrot-api/bootstrap.zip"
for zip in "$rotate_zip" "$api_zip"; do
  [ -f "$zip" ] || die "$zip is missing (run without --skip-build)"
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
deploy_log="$(mktemp)"
if ! aws_ cloudformation deploy \
  --stack-name "$stack" \
  --template-file cfn/template.yaml \
  --capabilities CAPABILITY_IAM \
  --no-fail-on-empty-changeset \
  ${template_args[@]+"${template_args[@]}"} \
  --parameter-overrides "${overrides[@]}" 2> >(tee "$deploy_log" >&2); then
  # Some endpoints refuse an empty change set outright instead of creating a FAILED one.
  grep -q 'No updates are to be performed' "$deploy_log" \
    || die "the stack did not deploy; see: aws cloudformation describe-stack-events --stack-name $stack"
  echo "no changes to the stack"
fi
rm -f "$deploy_log"

output() {
  aws_ cloudformation describe-stacks --stack-name "$stack" \
    --query "Stacks[0].Outputs[?OutputKey=='$1'].OutputValue" --output text
}
endpoint="$(output ApiEndpoint)"
api_key_id="$(output ApiKeyId)"
clients_secret="$(output ClientsSecretArn)"
rest_api_id="$(output RestApiId)"
stage="$(output StageName)"

if $existed; then
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
  default_cidrs="${allowed_cidrs:-$(aws_ cloudformation describe-stacks --stack-name "$stack" \
    --query "Stacks[0].Parameters[?ParameterKey=='AllowedCidrs'].ParameterValue" --output text)}"
  workdir="$(mktemp -d)"
  trap 'rm -rf "$workdir"' EXIT
  chmod 700 "$workdir"
  # The key's value goes from the AWS CLI into the digest only: never an argument, a file or output.
  client_key_id="${client_key_id:-$api_key_id}"
  digest="$(aws_ apigateway get-api-key --api-key "$client_key_id" --include-value --query value --output text \
    | tr -d '\n' | sha256sum | cut -d ' ' -f 1)"
  [ "${#digest}" -eq 64 ] || die "could not read the API key $client_key_id"
  aws_ secretsmanager get-secret-value --secret-id "$clients_secret" --query SecretString --output text \
    >"$workdir/clients.json"
  CLIENT_ID="$client_id" CLIENT_SCOPE="$client_scope" CLIENT_CIDRS="$client_cidrs" \
    DEFAULT_CIDRS="$default_cidrs" DIGEST="$digest" \
    "$venv/bin/python" - "$workdir/clients.json" <<'PY'
import json, os, sys

path = sys.argv[1]
with open(path) as f:
    registry = json.load(f)
clients = registry.setdefault("clients", [])
split = lambda s: [x.strip() for x in s.split(",") if x.strip()]
entry = next((c for c in clients if c.get("id") == os.environ["CLIENT_ID"]), None)
scope = split(os.environ["CLIENT_SCOPE"])
cidrs = split(os.environ["CLIENT_CIDRS"])
if entry is None:
    if not scope:
        sys.exit("deploy.sh: a new client needs --client-scope (user names, comma-separated, or '*')")
    entry = {"id": os.environ["CLIENT_ID"], "allowed_cidrs": cidrs or split(os.environ["DEFAULT_CIDRS"])}
    clients.append(entry)
entry["api_key_sha256"] = os.environ["DIGEST"]
if scope:
    entry["scope"] = scope
if cidrs:
    entry["allowed_cidrs"] = cidrs
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

Get a token (valid for two minutes) and fetch the current key of user $user:
  TOKEN="\$(curl -sS -X POST -H "x-api-key: \$KEYROT_API_KEY" $endpoint/generate-token \\
      | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')"
  curl -sS -H "x-api-key: \$KEYROT_API_KEY" -H "Authorization: Bearer \$TOKEN" \\
      "$endpoint/active-key?username=$user"

Let the AWS CLI and SDKs pick up rotated keys by themselves (~/.aws/config):
  [profile $user]
  credential_process = keyrot credential-process --endpoint $endpoint --api-key-env KEYROT_API_KEY --username $user

Health check (no key needed, allowlisted addresses only): curl -sS $endpoint/health
The rotator runs on its schedule; run it now with:
  aws lambda invoke --function-name $(output RotateFunctionName) --invocation-type Event /dev/null
EOF
