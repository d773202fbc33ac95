//! The custom-resource framework, run as a compiled Lambda (the probe resource) behind the Runtime
//! API, answering CloudFormation over HTTP: exactly one response on every path.

use serde_json::{Map, Value, json};
use std::time::Duration;
use system_tests::cloudformation::Player;
use system_tests::lambda::{FunctionConfig, LambdaFunction, Outcome};

fn probe(timeout: Duration) -> LambdaFunction {
    let mut config = FunctionConfig::new("probe", system_tests::function_binary("probe-resource"));
    config.timeout = timeout;
    LambdaFunction::new(config)
}

fn assert_no_secret_in_logs(function: &LambdaFunction, secret: &str) {
    let logs = function.logs();
    assert!(!logs.is_empty(), "the function logged nothing");
    for line in &logs {
        assert!(
            !line.contains(secret),
            "secret leaked into a log line: {line}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn success_is_answered_once_with_data_and_logs_are_json_with_ids() {
    let function = probe(Duration::from_secs(10));
    let cfn = Player::new(&function, "Custom::Probe").await;
    let answer = cfn.create("Probe", json!({"PhysicalId": "p-1"})).await;
    assert!(answer.is_success(), "{answer:?}");
    assert_eq!(answer.physical_id, "p-1");
    assert_eq!(answer.attr("Echo"), "p-1");
    assert_eq!(answer.invocations, [Outcome::Response(b"null".to_vec())]);
    assert_no_secret_in_logs(&function, &answer.signature);
    let received = function
        .logs()
        .into_iter()
        .find(|l| l.contains("request received"))
        .expect("a request-received line");
    let line: Value = serde_json::from_str(&received).expect("log lines are JSON");
    let span = &line["span"];
    assert_eq!(span["request_id"], answer.request_id);
    assert_eq!(span["logical_resource_id"], "Probe");
    assert_eq!(span["request_type"], "Create");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_create_answers_a_marker_id_and_the_rollback_delete_still_cleans_up() {
    let function = probe(Duration::from_secs(10));
    let cfn = Player::new(&function, "Custom::Probe").await;
    let failed = cfn
        .create("Probe", json!({"FailWith": "bad input:\nline two"}))
        .await;
    assert_eq!(failed.status, "FAILED");
    assert_eq!(failed.reason, "bad input: line two");
    assert!(
        failed
            .physical_id
            .starts_with(custom_resource::FAILED_CREATE_PREFIX),
        "{}",
        failed.physical_id
    );
    // The rollback Delete reaches the resource even with the marker: the Create may have made
    // something before its answer was lost, and only the resource can find what it owns.
    let rollback = cfn
        .delete(
            "Probe",
            &failed.physical_id,
            json!({"FailWith": "bad input:\nline two"}),
        )
        .await;
    assert!(rollback.is_success(), "{rollback:?}");
    assert_eq!(rollback.physical_id, failed.physical_id);
    let ran = function
        .logs()
        .into_iter()
        .filter(|l| l.contains("probe delete of"))
        .collect::<Vec<_>>();
    assert_eq!(ran.len(), 1, "{ran:?}");
    assert!(ran[0].contains(&failed.physical_id), "{}", ran[0]);
    assert!(ran[0].contains("known []"), "{}", ran[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_id_is_answered_on_error_panic_and_timeout() {
    let function = probe(Duration::from_secs(4));
    let cfn = Player::new(&function, "Custom::Probe").await;
    for (case, props) in [
        (
            "error",
            json!({"RecordId": "made-1", "FailWith": "it broke after the POST"}),
        ),
        ("panic", json!({"RecordId": "made-1", "Panic": "true"})),
        (
            "timeout",
            json!({"RecordId": "made-1", "SleepSeconds": "30"}),
        ),
    ] {
        let answer = cfn.create("Probe", props).await;
        assert_eq!(answer.status, "FAILED", "{case}");
        assert_eq!(answer.physical_id, "made-1", "{case}: {}", answer.reason);
        assert_eq!(answer.invocations.len(), 1, "{case}");
        assert!(answer.invocations[0].is_success(), "{case}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_response_url_at_the_deadline_still_gets_the_answer_before_the_kill() {
    // 20 s function: the framework answers at 16 s; the first PUT stalls and is cut off at half
    // of the 4 s left, the second is delivered before Lambda's kill.
    let function = probe(Duration::from_secs(20));
    let cfn = Player::new(&function, "Custom::Probe").await;
    cfn.receiver.stall_next(1);
    let answer = cfn.create("Probe", json!({"SleepSeconds": "60"})).await;
    assert_eq!(answer.status, "FAILED", "{answer:?}");
    assert!(answer.reason.contains("timed out"), "{}", answer.reason);
    assert_eq!(answer.invocations.len(), 1);
    assert!(
        answer.invocations[0].is_success(),
        "killed before the answer: {:?}",
        answer.invocations
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panic_answers_failed_and_the_process_keeps_serving() {
    let function = probe(Duration::from_secs(10));
    let cfn = Player::new(&function, "Custom::Probe").await;
    let answer = cfn.create("Probe", json!({"Panic": "true"})).await;
    assert_eq!(answer.status, "FAILED");
    assert!(
        answer.reason.contains("panicked while about to panic"),
        "{}",
        answer.reason
    );
    // One invocation, answered normally: Lambda does not retry, so no second response.
    assert_eq!(answer.invocations.len(), 1);
    assert!(answer.invocations[0].is_success());
    let update = cfn
        .update(
            "Probe",
            &answer.physical_id,
            json!({}),
            json!({"Panic": "true"}),
        )
        .await;
    assert!(update.is_success());
    assert_eq!(
        function.cold_starts(),
        1,
        "the panic must not kill the process"
    );
    assert!(
        function
            .logs()
            .iter()
            .any(|l| l.contains("probe asked to panic"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_timeout_answers_failed_before_lambda_kills_the_process() {
    let function = probe(Duration::from_secs(4));
    let cfn = Player::new(&function, "Custom::Probe").await;
    let answer = cfn.create("Probe", json!({"SleepSeconds": "30"})).await;
    assert_eq!(answer.status, "FAILED");
    // 4 s function: the framework keeps a fifth back and answers at about 3.2 s.
    let after = answer.timed_out_after().expect(&answer.reason);
    assert!((2.5..4.0).contains(&after), "{}", answer.reason);
    assert!(
        answer.reason.contains("while sleeping 30 s"),
        "{}",
        answer.reason
    );
    assert_eq!(answer.invocations.len(), 1);
    assert!(
        answer.invocations[0].is_success(),
        "{:?}",
        answer.invocations
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_too_large_for_the_response_answers_failed_saying_so() {
    let function = probe(Duration::from_secs(10));
    let cfn = Player::new(&function, "Custom::Probe").await;
    let answer = cfn.create("Probe", json!({"DataBytes": "5000"})).await;
    assert_eq!(answer.status, "FAILED");
    assert!(answer.reason.contains("does not fit"), "{}", answer.reason);
    assert!(answer.data.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_property_value_names_the_property_and_accepted_values() {
    let function = probe(Duration::from_secs(10));
    let cfn = Player::new(&function, "Custom::Probe").await;
    let answer = cfn.create("Probe", json!({"Panic": "maybe"})).await;
    assert_eq!(answer.status, "FAILED");
    assert_eq!(
        answer.reason,
        "property Panic must be \"true\" or \"false\", got \"maybe\""
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_request_is_still_answered() {
    let function = probe(Duration::from_secs(10));
    let cfn = Player::new(&function, "Custom::Probe").await;
    let mut event = Map::new();
    event.insert("RequestType".into(), json!("Update")); // no PhysicalResourceId, no properties
    event.insert(
        "StackId".into(),
        json!(system_tests::cloudformation::STACK_ID),
    );
    event.insert("LogicalResourceId".into(), json!("Probe"));
    event.insert("ResourceType".into(), json!("Custom::Probe"));
    let answer = cfn.send_event(event).await;
    assert_eq!(answer.status, "FAILED");
    assert!(answer.reason.contains("malformed"), "{}", answer.reason);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_wrapped_in_sns_is_answered() {
    let function = probe(Duration::from_secs(10));
    let cfn = Player::new(&function, "Custom::Probe").await;
    let request_id = system_tests::random_uuid();
    let (url, _) = cfn.receiver.url_for(&request_id);
    let inner = json!({
        "RequestType": "Create", "RequestId": request_id, "ResponseURL": url,
        "StackId": system_tests::cloudformation::STACK_ID, "ResourceType": "Custom::Probe",
        "LogicalResourceId": "Probe", "ResourceProperties": {"PhysicalId": "via-sns"}
    });
    let sns =
        json!({"Records": [{"EventSource": "aws:sns", "Sns": {"Message": inner.to_string()}}]});
    assert!(function.invoke(&sns).await.is_success());
    let put = cfn
        .receiver
        .wait_accepted(&request_id, Duration::from_secs(1))
        .await
        .expect("answered");
    let body: Value = serde_json::from_slice(&put.body).unwrap();
    assert_eq!(body["PhysicalResourceId"], "via-sns");
    assert!(put.problems.is_empty(), "{:?}", put.problems);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_put_is_retried_on_5xx_but_never_on_403() {
    let function = probe(Duration::from_secs(20));
    let cfn = Player::new(&function, "Custom::Probe").await;
    cfn.receiver.fail_next(&[500, 503]);
    let answer = cfn.create("Probe", json!({})).await;
    assert!(answer.is_success());
    let statuses: Vec<u16> = cfn
        .receiver
        .puts_for(&answer.request_id)
        .iter()
        .map(|p| p.http_status)
        .collect();
    assert_eq!(statuses, [500, 503, 200]);

    // An expired URL (S3 answers 403): one attempt, no retry, and the invocation still ends
    // normally so Lambda does not re-run the handler.
    let request_id = system_tests::random_uuid();
    let (url, _) = cfn.receiver.url_for(&request_id);
    cfn.receiver.fail_next(&[403]);
    let event = json!({
        "RequestType": "Create", "RequestId": request_id, "ResponseURL": url,
        "StackId": system_tests::cloudformation::STACK_ID, "ResourceType": "Custom::Probe",
        "LogicalResourceId": "Probe", "ResourceProperties": {}
    });
    assert!(function.invoke(&event).await.is_success());
    let statuses: Vec<u16> = cfn
        .receiver
        .puts_for(&request_id)
        .iter()
        .map(|p| p.http_status)
        .collect();
    assert_eq!(statuses, [403]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_that_is_not_a_custom_resource_request_is_a_function_error() {
    let function = probe(Duration::from_secs(10));
    let outcome = function.invoke(&json!({"hello": "world"})).await;
    assert!(matches!(outcome, Outcome::Error(_)), "{outcome:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runtime_api_kills_a_function_that_outlives_its_timeout_as_lambda_does() {
    // Blocking code starves the framework's own timer: only the kill is left, the stack gets no
    // answer, and the next invocation starts a new process. (Handlers must not block.)
    let function = probe(Duration::from_secs(2));
    let cfn = Player::new(&function, "Custom::Probe").await;
    let request_id = system_tests::random_uuid();
    let (url, _) = cfn.receiver.url_for(&request_id);
    let event = json!({
        "RequestType": "Create", "RequestId": request_id, "ResponseURL": url,
        "StackId": system_tests::cloudformation::STACK_ID, "ResourceType": "Custom::Probe",
        "LogicalResourceId": "Probe", "ResourceProperties": {"BlockSeconds": "10"}
    });
    assert_eq!(function.invoke(&event).await, Outcome::TimedOut);
    assert!(cfn.receiver.puts_for(&request_id).is_empty());
    let fine = json!({
        "RequestType": "Create", "RequestId": request_id, "ResponseURL": url,
        "StackId": system_tests::cloudformation::STACK_ID, "ResourceType": "Custom::Probe",
        "LogicalResourceId": "Probe", "ResourceProperties": {}
    });
    assert!(function.invoke(&fine).await.is_success());
    assert_eq!(function.cold_starts(), 2, "the killed process was reused");
}
