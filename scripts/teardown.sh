#!/usr/bin/env bash
# Removes what keyrot created in an AWS account: the CloudFormation stack (functions, roles,
# schedule, API, API key, signing key and client registry, alarms, log groups), then the per-user
# secrets the rotator created under the stack's secret prefix, the customer KMS key if the stack
# made one, and, with --bucket, the zips deploy.sh uploaded.
# The IAM access keys of the managed users are left alone: they belong to the users, and
# consumers may still be using the current ones.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  cat <<'EOF_USAGE'
Usage: scripts/teardown.sh [options]

  --stack NAME             stack name (default: keyrot)
  --region REGION          AWS region (default: the AWS CLI's)
  --keep-user-secrets      keep the per-user secrets (and the customer KMS key that encrypts them)
  --force-delete-secrets   delete the per-user secrets at once, without a recovery window
  --recovery-window DAYS   recovery window of the per-user secrets and the KMS key's pending
                           deletion, 7 to 30 (default: 30)
  --bucket BUCKET          also delete the zips and templates deploy.sh uploaded to this bucket
  --prefix PREFIX          their S3 key prefix (default: keyrot/)
  --force-shared-prefix    delete the per-user secrets even though another stack in the region
                           uses the same SecretPrefix (its secrets would go too)
  --yes                    do not ask for confirmation
  -h, --help               this text
EOF_USAGE
}

die() { printf 'teardown.sh: %s\n' "$*" >&2; exit 1; }
say() { printf '\n==> %s\n' "$*"; }

stack=keyrot
region=""
keep_secrets=false
force=false
window=30
bucket=""
prefix="keyrot/"
yes=false
shared_ok=false

while [ $# -gt 0 ]; do
  case "$1" in
    --stack) stack="${2:?--stack needs a value}"; shift 2 ;;
    --region) region="${2:?--region needs a value}"; shift 2 ;;
    --keep-user-secrets) keep_secrets=true; shift ;;
    --force-delete-secrets) force=true; shift ;;
    --recovery-window) window="${2:?--recovery-window needs a value}"; shift 2 ;;
    --bucket) bucket="${2:?--bucket needs a value}"; shift 2 ;;
    --prefix) prefix="${2:?--prefix needs a value}"; shift 2 ;;
    --yes) yes=true; shift ;;
    --force-shared-prefix) shared_ok=true; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
case "$window" in
  [7-9] | [12][0-9] | 30) ;;
  *) die "--recovery-window must be a number of days from 7 to 30" ;;
esac
case "$prefix" in */ | "") ;; *) prefix="$prefix/" ;; esac
command -v aws >/dev/null || die "the AWS CLI (aws) is needed"

aws_() {
  if [ -n "$region" ]; then aws --region "$region" "$@"; else aws "$@"; fi
}
output() {
  aws_ cloudformation describe-stacks --stack-name "$stack" \
    --query "Stacks[0].Outputs[?OutputKey=='$1'].OutputValue" --output text
}
parameter() {
  aws_ cloudformation describe-stacks --stack-name "$stack" \
    --query "Stacks[0].Parameters[?ParameterKey=='$1'].ParameterValue" --output text
}

err="$(mktemp)"
trap 'rm -f "$err"' EXIT
if ! stack_id="$(aws_ cloudformation describe-stacks --stack-name "$stack" --query 'Stacks[0].StackId' \
  --output text 2>"$err")"; then
  grep -q 'does not exist' "$err" && die "no stack named $stack$([ -n "$region" ] && echo " in $region")"
  cat "$err" >&2
  die "could not look up stack $stack (the AWS error is above)"
fi
secret_prefix="$(parameter SecretPrefix)"
[ "$secret_prefix" = None ] && secret_prefix=""
kms_key="$(output KmsKeyArn)"
[ "$kms_key" = None ] && kms_key=""
if [ -z "$secret_prefix" ] && ! $keep_secrets; then
  # A stack whose creation never got going (e.g. REVIEW_IN_PROGRESS) has no parameters, and so
  # no rotator that could have made secrets.
  echo "note: stack $stack has no SecretPrefix parameter; deleting the stack only, no per-user secrets"
  keep_secrets=true
  no_prefix=true
else
  no_prefix=false
fi

if ! $keep_secrets; then
  # Another stack with the same SecretPrefix (or one under it) keeps its users' secrets there,
  # with the same tag: deleting "ours" would delete theirs.
  others="$(aws_ cloudformation describe-stacks \
    --query "Stacks[?StackId!='$stack_id'].[StackName, Parameters[?ParameterKey=='SecretPrefix'].ParameterValue | [0]]" \
    --output text)" || die "could not list the region's stacks to check that SecretPrefix $secret_prefix is not shared"
  shared=()
  while IFS=$'\t' read -r other other_prefix; do
    if [ -z "$other" ] || [ "$other_prefix" = None ]; then continue; fi
    case "$other_prefix" in "$secret_prefix"*) shared+=("$other ($other_prefix)") ;; esac
  done <<<"$others"
  if [ ${#shared[@]} -gt 0 ]; then
    if $shared_ok; then
      echo "warning: SecretPrefix $secret_prefix is shared with: ${shared[*]}; their secrets go too (--force-shared-prefix)"
    else
      die "other stacks keep their secrets under $secret_prefix: ${shared[*]}; deleting ours would delete theirs. Use --keep-user-secrets, or --force-shared-prefix to delete them all"
    fi
  fi
fi

if ! $yes; then
  [ -t 0 ] || die "not a terminal: pass --yes to confirm"
  what="the stack $stack"
  $keep_secrets || what="$what, the secrets under $secret_prefix"
  $keep_secrets || [ -z "$kms_key" ] || what="$what, the KMS key $kms_key"
  [ -z "$bucket" ] || what="$what, the uploads in s3://$bucket/$prefix"
  printf 'This deletes %s.\nType the stack name to go on: ' "$what"
  read -r answer
  [ "$answer" = "$stack" ] || die "not confirmed"
fi

say "deleting stack $stack"
aws_ cloudformation delete-stack --stack-name "$stack"
aws_ cloudformation wait stack-delete-complete --stack-name "$stack" \
  || die "the stack did not delete; see: aws cloudformation describe-stack-events --stack-name $stack"

if $no_prefix; then
  say "no per-user secrets to delete (the stack had no SecretPrefix)"
elif $keep_secrets; then
  say "keeping the per-user secrets under $secret_prefix$([ -n "$kms_key" ] && echo " and the KMS key $kms_key")"
else
  say "deleting the per-user secrets under $secret_prefix"
  # Only secrets keyrot created: the exact (case-sensitive) prefix and the tag
  # keyrot:managed-by=keyrot as one pair (list-secrets' tag-key and tag-value filters match
  # independently, so the pair is checked in the query). The listing is read in full first so
  # that a failed listing stops here.
  listing="$(aws_ secretsmanager list-secrets \
    --filters Key=name,Values="$secret_prefix" Key=tag-key,Values=keyrot:managed-by \
    --query "SecretList[?Tags[?Key=='keyrot:managed-by' && Value=='keyrot']].[Name,ARN]" --output text)" \
    || die "could not list the secrets under $secret_prefix; nothing was deleted (the stack is gone already)"
  count=0
  while IFS=$'\t' read -r name arn; do
    [ -n "$arn" ] || continue
    case "$name" in "$secret_prefix"*) ;; *) continue ;; esac
    if $force; then
      aws_ secretsmanager delete-secret --secret-id "$arn" --force-delete-without-recovery >/dev/null
    else
      aws_ secretsmanager delete-secret --secret-id "$arn" --recovery-window-in-days "$window" >/dev/null
    fi
    echo "deleted $name"
    count=$((count + 1))
  done <<<"$listing"
  if $force; then
    echo "$count secrets deleted without recovery"
  else
    echo "$count secrets scheduled for deletion in $window days (aws secretsmanager restore-secret undoes it)"
  fi
  if [ -n "$kms_key" ]; then
    say "scheduling the deletion of the KMS key $kms_key in $window days"
    aws_ kms schedule-key-deletion --key-id "$kms_key" --pending-window-in-days "$window" >/dev/null
  fi
fi

if [ -n "$bucket" ]; then
  say "deleting deploy.sh's uploads in s3://$bucket/$prefix"
  aws_ s3 rm --recursive --only-show-errors "s3://$bucket/$prefix" \
    --exclude '*' --include '*/keyrot-rotate.zip' --include '*/keyrot-api.zip' --include 'cfn/*'
fi

say "keyrot is gone from $([ -n "$region" ] && echo "$region" || echo "this region")"
echo "The managed users keep their IAM access keys; remove the keyrot:managed tag from them if keyrot will not return."
