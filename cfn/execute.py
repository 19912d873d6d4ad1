#!/usr/bin/env python3
"""The many-accounts state machine of cfn/template.yaml, executed by moto's interpreter of the
Amazon States Language (moto 5.2, in this process: nothing listens, nothing leaves it).

Run with keyrot's venv:  "$(scripts/venv.sh)/bin/python" cfn/execute.py [cfn/template.yaml]
(keyrot-aws/tests/state_machine.rs runs it).

What moto runs (moto.stepfunctions.parser, LocalStack's interpreter, enabled by the config
`stepfunctions.execute_state_machine`): every state type, JSONPath and intrinsic functions,
`lambda:invoke` (with `lambda.use_docker` off, moto's "simple" Lambda answers each invocation
with the next answer queued here, the worker's recorded answers), `aws-sdk:s3:putObject`,
a Distributed Map's `ItemReader` over S3 JSON, `ItemSelector`, `MaxConcurrencyPath`, the item
loop, `ResultWriter`, `Catch`, `Choice`, `Fail`. What it does not: its `ResultWriter` writes
the manifest only, with no result files (so the summary's reading of result files is tested
in keyrot-lambda's tests, against files written as Step Functions writes them);
`ToleratedFailurePercentagePath` is read but has no effect, and a failed item never fails
its map, so the `Catch` after a failed map is not run;
its simple Lambda never fails an invocation, so this script makes a queued answer with an
`errorType` a function error (as Lambda reports the worker's errors); `Retry` waits its real
intervals (60 s and more), so only not-retryable errors are played; a `Choice` on a missing
variable takes the default where AWS fails; and `aws-sdk:s3:putObject` refuses a JSON body (so
the definition writes the inventory as text with States.JsonToString, as AWS takes it too).

Two executions: every account succeeds (one account loops once for users left); and one
account's item fails, the other's does not, and the summary is asked for all the same.
"""

import io
import json
import sys
import time
import zipfile

import boto3
import yaml
from moto import mock_aws
from moto.awslambda_simple.models import lambda_simple_backends
from moto.core import DEFAULT_ACCOUNT_ID

REGION = "us-east-1"
BUCKET = "keyrot-accounts"
A, B, MISSING = "111111111111", "222222222222", "999999999999"


class Loader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags read as plain values."""


def _any_tag(loader, _suffix, node):
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    return loader.construct_mapping(node)


Loader.add_multi_constructor("!", _any_tag)


def definition(template_path, worker):
    """The definition, its substitutions made."""
    template = yaml.load(open(template_path), Loader=Loader)
    machine = template["Resources"]["AccountsStateMachine"]["Properties"]["Definition"]
    text = json.dumps(machine)
    return text.replace("${Worker}", worker).replace("${Bucket}", BUCKET)


def answer(account, rotated, more):
    return {"account": account, "outcome": "ok", "users": 3, "rotated": rotated,
            "failed": 0, "skipped": 2 if more else 0, "more": more}


SUMMARY = {"key": "summaries/run.json", "total": 3, "failed": 1, "rotated": 3}


def _failing_when_asked():
    """moto's simple Lambda, answering a queued answer that has an `errorType` as Lambda
    answers a function error (the `X-Amz-Function-Error` header)."""
    from moto.awslambda_simple.models import LambdaSimpleBackend

    simple = LambdaSimpleBackend.invoke

    def invoke(self, function_name, qualifier, body, headers, response_headers):
        payload = simple(self, function_name, qualifier, body, headers, response_headers)
        try:
            if "errorType" in json.loads(payload):
                response_headers["x-amz-function-error"] = "Unhandled"
        except (ValueError, TypeError):
            pass
        return payload

    LambdaSimpleBackend.invoke = invoke


def execute(sfn, machine, queue, name, answers):
    queue.clear()
    queue.extend(a if isinstance(a, str) else json.dumps(a) for a in answers)
    run = sfn.start_execution(
        stateMachineArn=machine, name=name,
        input=json.dumps({"maxConcurrency": 1, "toleratedFailurePercentage": 0}),
    )["executionArn"]
    for _ in range(600):
        described = sfn.describe_execution(executionArn=run)
        if described["status"] != "RUNNING":
            break
        time.sleep(0.05)
    assert not queue, f"{name}: answers left unused: {queue}"
    events = sfn.get_execution_history(executionArn=run, maxResults=1000)["events"]
    return run, described, events


def scheduled(events, function_payload_keyrot):
    """The payloads of the lambda:invoke tasks whose payload's keyrot is the one given."""
    found = []
    for event in events:
        details = event.get("taskScheduledEventDetails")
        if details and details["resource"] == "invoke":
            payload = json.loads(details["parameters"])["Payload"]
            if payload.get("keyrot") == function_payload_keyrot:
                found.append(payload)
    return found


@mock_aws(config={"stepfunctions": {"execute_state_machine": True},
                  "lambda": {"use_docker": False}})
def main(template_path):
    _failing_when_asked()
    iam = boto3.client("iam", region_name=REGION)
    role = iam.create_role(RoleName="keyrot", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as z:
        z.writestr("bootstrap", "")
    worker = boto3.client("lambda", region_name=REGION).create_function(
        FunctionName="keyrot-accounts", Runtime="provided.al2023", Role=role,
        Handler="bootstrap", Code={"ZipFile": code.getvalue()},
    )["FunctionArn"]
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET)
    sfn = boto3.client("stepfunctions", region_name=REGION)

    machine = sfn.create_state_machine(
        name="keyrot-accounts", definition=definition(template_path, worker), roleArn=role,
        type="STANDARD",
    )["stateMachineArn"]
    queue = lambda_simple_backends[DEFAULT_ACCOUNT_ID][REGION].lambda_simple_results_queue
    inventory = {"accounts": [{"account": A}, {"account": B}], "missing": [MISSING]}

    # Every account succeeds; A has users left after its first invocation and loops once.
    run, described, events = execute(sfn, machine, queue, "run-1", [
        inventory, answer(A, 1, True), answer(A, 3, False), answer(B, 0, False), SUMMARY,
    ])
    assert described["status"] == "SUCCEEDED", described
    body = s3.get_object(Bucket=BUCKET, Key="inventory/run-1.json")["Body"].read()
    assert json.loads(body) == inventory["accounts"], body
    (map_run,) = sfn.list_map_runs(executionArn=run)["mapRuns"]
    counts = sfn.describe_map_run(mapRunArn=map_run["mapRunArn"])
    assert counts["maxConcurrency"] == 1, counts
    assert counts["itemCounts"]["total"] == 2, counts
    assert counts["itemCounts"]["succeeded"] == 2, counts
    (summary,) = scheduled(events, "summary")
    assert summary["bucket"] == BUCKET and summary["execution"] == "run-1", summary
    assert summary["run"]["inventory"]["missing"] == [MISSING], summary
    manifest = summary["run"]["results"]["ResultWriterDetails"]
    assert manifest["Bucket"] == BUCKET and manifest["Key"].startswith("runs/"), summary
    assert manifest["Key"].endswith("/manifest.json"), summary
    s3.head_object(Bucket=BUCKET, Key=manifest["Key"])
    assert "failure" not in summary["run"], summary
    output = json.loads(described["output"])
    assert output["summary"] == SUMMARY, output

    # B's role denies: its item fails, A's does not, and the summary is asked for. (moto's map
    # never fails for failed items, tolerated or not: the Catch that still asks for the
    # summary after a failed map is not run here.)
    denied = {"errorType": "keyrot.NotRetryable.AccessDenied",
              "errorMessage": f"could not list the managed users of account {B}"}
    run, described, events = execute(sfn, machine, queue, "run-2", [
        inventory, answer(A, 0, False), denied, SUMMARY,
    ])
    assert described["status"] == "SUCCEEDED", described
    (map_run,) = sfn.list_map_runs(executionArn=run)["mapRuns"]
    counts = sfn.describe_map_run(mapRunArn=map_run["mapRunArn"])["itemCounts"]
    assert (counts["succeeded"], counts["failed"]) == (1, 1), counts
    (summary,) = scheduled(events, "summary")
    assert summary["execution"] == "run-2", summary
    assert summary["run"]["results"]["ResultWriterDetails"]["Key"].endswith("/manifest.json")

    print("cfn/execute.py: the accounts state machine ran in moto (2 executions)")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "cfn/template.yaml")
