#!/usr/bin/env bash
# Checks keyrot's CloudFormation template, as scripts/test.sh does:
#   1. cfn-lint (pinned in scripts/requirements.txt) on cfn/template.yaml, cfn/member.yaml (the
#      member role, deployed by the StackSet) and cfn/org.yaml (the management account's);
#   2. the cfn-guard rules in cfn/rules: the template passes every rule (none skipped), the member
#      and org templates pass the rules about their roles (MEMBER_RULES, ORG_RULES), and every
#      deliberately bad template in cfn/bad fails the rule it is named after
#      (cfn/bad/<rule>[--<variant>].yaml), with each message its "# expect:" lines name;
#   3. the rehearsal (cfn/rehearse.py): the template deployed into moto on 127.0.0.1;
#   4. the accounts state machine executed by moto's interpreter (cfn/execute.py).
# cfn-guard is installed once with cargo into ~/.cache/keyrot/tools (override: KEYROT_TOOLS), built
# in its own target directory so that it never waits on the workspace's build.
set -euo pipefail
cd "$(dirname "$0")/.."

CFN_GUARD_VERSION=3.2.1
tools="${KEYROT_TOOLS:-$HOME/.cache/keyrot/tools}"
started=$SECONDS

fail() { printf 'cfn/check.sh: FAILED: %s\n' "$*" >&2; exit 1; }
step() { printf '\n--> %s\n' "$*"; }

venv="$(./scripts/venv.sh)" || fail "scripts/venv.sh could not provide cfn-lint and moto"

step "cfn-lint $("$venv/bin/cfn-lint" --version | awk '{print $2}')"
for template in cfn/template.yaml cfn/member.yaml cfn/org.yaml; do
  "$venv/bin/cfn-lint" "$template" || fail "cfn-lint reports problems in $template (above)"
  echo "$template: clean"
done

guard="$tools/bin/cfn-guard"
if [ ! -x "$guard" ] || [ "$("$guard" --version 2>/dev/null)" != "cfn-guard $CFN_GUARD_VERSION" ]; then
  step "installing cfn-guard $CFN_GUARD_VERSION into $tools (takes a few minutes, once)"
  command -v cargo >/dev/null || fail "cargo is needed to install cfn-guard"
  CARGO_TARGET_DIR="${KEYROT_TOOLS_TARGET:-$HOME/.cache/keyrot/tools-target}" \
    cargo install cfn-guard --version "$CFN_GUARD_VERSION" --locked --root "$tools" \
    || fail "cargo install cfn-guard $CFN_GUARD_VERSION failed"
fi

step "cfn-guard $CFN_GUARD_VERSION: cfn/template.yaml passes every rule"
summary="$("$guard" validate --rules cfn/rules --data cfn/template.yaml --show-summary all 2>&1)" && status=0 || status=$?
rules=0
for rule_file in cfn/rules/*.guard; do
  rule="$(basename "$rule_file" .guard)"
  rules=$((rules + 1))
  grep -Eq "^rule $rule( |\$)" "$rule_file" || fail "$rule_file must define one rule named $rule"
  if ! grep -Eq "^$rule\\.guard/$rule +PASS\$" <<<"$summary"; then
    printf '%s\n' "$summary" >&2
    fail "cfn/template.yaml does not pass the guard rule $rule (it must PASS, not FAIL or SKIP)"
  fi
  echo "PASS $rule"
done
[ "$status" -eq 0 ] || { printf '%s\n' "$summary" >&2; fail "cfn-guard exited with $status on cfn/template.yaml"; }

# The member role's template and the management account's hold only roles (and the StackSet):
# the rules about roles apply to them, and must PASS.
MEMBER_RULES="access_key_actions_scoped no_wildcard_iam_secretsmanager_actions cross_account_roles delivery_scoped"
ORG_RULES="no_wildcard_iam_secretsmanager_actions cross_account_roles"
for pair in "cfn/member.yaml:$MEMBER_RULES" "cfn/org.yaml:$ORG_RULES"; do
  template="${pair%%:*}"
  step "cfn-guard $CFN_GUARD_VERSION: $template passes ${pair#*:}"
  for rule in ${pair#*:}; do
    summary="$("$guard" validate --rules "cfn/rules/$rule.guard" --data "$template" --show-summary all 2>&1)" || true
    grep -Eq "^$rule\.guard/$rule +PASS\$" <<<"$summary" \
      || { printf '%s\n' "$summary" >&2; fail "$template does not pass the guard rule $rule"; }
    echo "PASS $rule"
  done
done

step "cfn-guard: each bad template fails the rule it targets"
declare -A proven=()
for bad in cfn/bad/*.yaml; do
  name="$(basename "$bad" .yaml)"
  rule="${name%%--*}"
  [ -f "cfn/rules/$rule.guard" ] || fail "$bad names no rule: cfn/rules/$rule.guard does not exist"
  mapfile -t expected < <(sed -n 's/^# expect: //p' "$bad")
  [ "${#expected[@]}" -gt 0 ] || fail "$bad has no '# expect: <message>' line"
  report="$("$guard" validate --rules "cfn/rules/$rule.guard" --data "$bad" --output-format json --show-summary none 2>&1)" \
    && status=0 || status=$?
  # 19 is cfn-guard's "some rule failed"; anything else (0 passed, 5 parse error) proves nothing.
  [ "$status" -eq 19 ] || { printf '%s\n' "$report" >&2; fail "$bad should FAIL $rule (cfn-guard exit 19), got exit $status"; }
  for message in "${expected[@]}"; do
    grep -Fq "\"custom_message\": \"$message\"" <<<"$report" \
      || { printf '%s\n' "$report" >&2; fail "$bad fails $rule, but not with: $message"; }
  done
  proven[$rule]=1
  echo "FAIL $rule <- $(basename "$bad"), as expected: $(IFS=';'; echo "${expected[*]}")"
done
for rule_file in cfn/rules/*.guard; do
  rule="$(basename "$rule_file" .guard)"
  [ -n "${proven[$rule]:-}" ] || fail "no template in cfn/bad shows that the rule $rule can fail"
done

step "rehearsal: the template deployed into moto on 127.0.0.1"
"$venv/bin/python" cfn/rehearse.py || fail "the rehearsal in moto failed (above)"

step "the accounts state machine executed by moto's interpreter"
"$venv/bin/python" cfn/execute.py 2>/dev/null || fail "the state machine's execution in moto failed (run cfn/execute.py)"

printf '\ncfn: cfn-lint clean, %d guard rules pass and each fails its bad templates, rehearsal and execution passed (%d s)\n' \
  "$rules" $((SECONDS - started))
