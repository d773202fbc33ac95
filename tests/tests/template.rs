//! The template grants each function exactly the AWS actions its code calls (the crates'
//! `IAM_ACTIONS`, which the whole-system tests check against every call the functions make).

use serde_json::Value;
use std::collections::BTreeSet;

fn template() -> Value {
    let path = system_tests::workspace().join("templates/template.yaml");
    let text = std::fs::read_to_string(path).expect("templates/template.yaml");
    // CloudFormation's short tags (!Ref, !GetAtt …) are dropped; their arguments stay.
    serde_saphyr::from_str(&text).expect("the template is YAML")
}

/// Every value of an `Action` key anywhere under `value`.
fn actions(value: &Value, found: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("Action", Value::String(a)) => {
                        found.insert(a.clone());
                    }
                    ("Action", Value::Array(list)) => {
                        found.extend(list.iter().filter_map(Value::as_str).map(str::to_owned));
                    }
                    _ => actions(v, found),
                }
            }
        }
        Value::Array(list) => list.iter().for_each(|v| actions(v, found)),
        _ => {}
    }
}

/// Policies of a role that grant what others call with the role, not the function's code:
/// writing its logs (Lambda), its network interfaces (Lambda, in a VPC), decrypting its secret
/// (Secrets Manager, under a customer key).
const NOT_THE_CODES: [&str; 3] = ["write-logs", "vpc-network-interfaces", "decrypt-api-key"];

/// A role's `Policies` entry: the policy itself, or (under `!If [condition, policy, NoValue]`,
/// whose tag the YAML reader drops) the policy it chooses.
fn policy_of(entry: &Value) -> &Value {
    match entry {
        Value::Array(choice) if choice.len() == 3 => &choice[1],
        other => other,
    }
}

/// The policy named `name` among `role`'s own, and the condition it is under, if any.
fn role_policy<'a>(
    resources: &'a serde_json::Map<String, Value>,
    role: &str,
    name: &str,
) -> (&'a Value, Option<&'a str>) {
    let entry = resources[role]["Properties"]["Policies"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| policy_of(p)["PolicyName"] == name)
        .unwrap_or_else(|| panic!("{role} has no policy {name}"));
    let condition = entry.as_array().and_then(|c| c[0].as_str());
    (policy_of(entry), condition)
}

/// The actions granted to `role` by its own policies and by policy resources attached to it,
/// leaving out the trust policy and the policies for others' calls ([`NOT_THE_CODES`]).
fn granted(resources: &serde_json::Map<String, Value>, role: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let role_resource = &resources[role]["Properties"];
    for entry in role_resource["Policies"].as_array().into_iter().flatten() {
        let policy = policy_of(entry);
        let name = policy["PolicyName"].as_str().unwrap_or_default();
        assert!(!name.is_empty(), "{role}: a policy without a name: {entry}");
        if !NOT_THE_CODES.contains(&name) {
            actions(&policy["PolicyDocument"], &mut found);
        }
    }
    for resource in resources.values() {
        let kind = resource["Type"].as_str().unwrap_or_default();
        let properties = &resource["Properties"];
        if kind == "AWS::IAM::RolePolicy" && properties["RoleName"] == role {
            actions(&properties["PolicyDocument"], &mut found);
        }
    }
    found
}

#[test]
fn each_function_role_grants_exactly_the_actions_its_code_calls() {
    let template = template();
    let resources = template["Resources"].as_object().expect("Resources");
    let declared: [(&str, &[&str]); 4] = [
        ("cluster-discovery", cluster_discovery::IAM_ACTIONS),
        ("eks-access", eks_access::IAM_ACTIONS),
        (
            "security-group-ingress",
            security_group_ingress::IAM_ACTIONS,
        ),
        ("hopsworks-cluster", hopsworks_cluster::IAM_ACTIONS),
    ];
    for (binary, calls) in declared {
        let (name, function) = resources
            .iter()
            .find(|(_, r)| r["Metadata"]["BuildProperties"]["Binary"] == binary)
            .unwrap_or_else(|| panic!("no function builds {binary}"));
        let role = function["Properties"]["Role"]
            .as_str()
            .and_then(|r| r.strip_suffix(".Arn"))
            .unwrap_or_else(|| panic!("{name} has no role of its own"));
        let granted = granted(resources, role);
        let wanted: BTreeSet<String> = calls.iter().map(|a| (*a).to_owned()).collect();
        assert_eq!(
            granted, wanted,
            "{role} ({binary}): the template grants the left, the code calls the right"
        );
    }
}

#[test]
fn every_function_is_arm64_on_provided_al2023_and_built_by_cargo_lambda() {
    let template = template();
    let globals = &template["Globals"]["Function"];
    let mut functions = 0;
    for (name, r) in template["Resources"].as_object().expect("Resources") {
        if r["Type"] != "AWS::Serverless::Function" {
            continue;
        }
        functions += 1;
        let p = &r["Properties"];
        let runtime = p.get("Runtime").unwrap_or(&globals["Runtime"]);
        assert_eq!(runtime, "provided.al2023", "{name}");
        // Lambda's arm64 (Graviton); `sam build` passes it to cargo-lambda as --arm64.
        let architectures = p.get("Architectures").unwrap_or(&globals["Architectures"]);
        assert_eq!(architectures, &serde_json::json!(["arm64"]), "{name}");
        assert_eq!(r["Metadata"]["BuildMethod"], "rust-cargolambda", "{name}");
        // `sam build` runs cargo-lambda in CodeUri with --bin Binary: the function's own crate
        // (a workspace member), never the repository root with target/ and .venv in it.
        let binary = r["Metadata"]["BuildProperties"]["Binary"]
            .as_str()
            .unwrap_or_else(|| panic!("{name} names no Binary"));
        assert_eq!(p["CodeUri"], format!("../functions/{binary}"), "{name}");
        let manifest = system_tests::workspace().join(format!("functions/{binary}/Cargo.toml"));
        let manifest = std::fs::read_to_string(&manifest)
            .unwrap_or_else(|e| panic!("{name}: {}: {e}", manifest.display()));
        assert!(
            manifest.contains(&format!("name = \"{binary}\"")),
            "{name}: functions/{binary}/Cargo.toml has no bin {binary}"
        );
    }
    assert_ne!(functions, 0, "no AWS::Serverless::Function in the template");
}

/// `aws logs tail` on a function's group shows that function alone, as JSON lines; the format
/// may come from Globals (SAM merges LoggingConfig key by key), the group may not.
#[test]
fn each_function_logs_json_to_a_log_group_of_its_own() {
    let template = template();
    let resources = template["Resources"].as_object().expect("Resources");
    let global_format = &template["Globals"]["Function"]["LoggingConfig"]["LogFormat"];
    let mut groups = BTreeSet::new();
    for (name, r) in resources {
        if r["Type"] != "AWS::Serverless::Function" {
            continue;
        }
        let logging = &r["Properties"]["LoggingConfig"];
        let format = logging.get("LogFormat").unwrap_or(global_format);
        assert_eq!(format, "JSON", "{name}: its log format");
        let group = logging["LogGroup"].as_str().unwrap_or_else(|| {
            panic!("{name} names no log group (Lambda would make one that outlives the stack)")
        });
        assert_eq!(
            resources.get(group).map(|g| &g["Type"]),
            Some(&Value::from("AWS::Logs::LogGroup")),
            "{name}: {group} is not a log group of the stack"
        );
        assert!(groups.insert(group), "{name} shares the log group {group}");
    }
    assert_ne!(
        groups.len(),
        0,
        "no AWS::Serverless::Function in the template"
    );
}

/// CloudFormation updates these roles before the resources that use them and deletes the old
/// resources (cleanup) or the new ones (rollback) afterwards: their policies must not name the
/// current cluster or its security group, or one of the two is out of reach.
#[test]
fn access_and_ingress_roles_name_no_one_cluster_so_updates_can_clean_up() {
    let template = template();
    let resources = template["Resources"].as_object().expect("Resources");
    for role in ["EksAccessRole", "SecurityGroupIngressRole"] {
        let policies = resources[role]["Properties"]["Policies"].to_string();
        for name in ["EksClusterName", "ClusterDiscovery"] {
            assert!(
                !policies.contains(name),
                "{role}'s policies name {name}: an update to another cluster could not clean up"
            );
        }
    }
}

#[test]
fn the_launch_form_has_no_way_to_send_the_api_key_elsewhere() {
    // Any https host typed into an address parameter would receive the Hopsworks.ai API key: the
    // function talks to api.hopsworks.ai only, and nothing on the form can change that.
    let template = template();
    let parameters = template["Parameters"].as_object().expect("Parameters");
    // By its words (HopsworksApiUrl: Hopsworks, Api, Url), so that Security is not a Uri.
    let words = |name: &str| -> Vec<String> {
        let mut words: Vec<String> = Vec::new();
        for c in name.chars() {
            match words.last_mut() {
                Some(word) if !c.is_ascii_uppercase() => word.push(c.to_ascii_lowercase()),
                _ => words.push(c.to_ascii_lowercase().to_string()),
            }
        }
        words
    };
    let addresses: Vec<&String> = parameters
        .keys()
        .filter(|name| {
            words(name)
                .iter()
                .any(|w| ["url", "endpoint", "host", "uri", "address"].contains(&w.as_str()))
        })
        .collect();
    assert!(addresses.is_empty(), "address parameters: {addresses:?}");
    let function = &template["Resources"]["HopsworksClusterFunction"]["Properties"];
    assert!(function.is_object(), "no HopsworksClusterFunction");
    assert!(
        function.get("Environment").is_none()
            && template["Globals"]["Function"].get("Environment").is_none(),
        "the function's environment can be set from the template: {function}"
    );
}

/// Each Step 6 parameter reaches the HopsworksCluster resource: a parameter on the form that no
/// property reads would change nothing on a stack update.
#[test]
fn every_hopsworks_cluster_parameter_reaches_the_custom_resource() {
    let template = template();
    let properties = &template["Resources"]["HopsworksCluster"]["Properties"];
    assert!(properties.is_object(), "no HopsworksCluster resource");
    // serde_saphyr drops the !Ref tag: a property `!Ref HopsworksX` reads "HopsworksX".
    let referenced = properties.to_string();
    // Steps 2 and 5 use these; the condition CreateCluster reads CreateHopsworksCluster.
    let elsewhere = [
        "HopsworksInstanceProfile",
        "HopsworksPrincipalType",
        "HopsworksPrincipal",
    ];
    let parameters = template["Parameters"].as_object().expect("Parameters");
    let unread: Vec<&String> = parameters
        .keys()
        .filter(|p| p.starts_with("Hopsworks") && !elsewhere.contains(&p.as_str()))
        .filter(|p| !referenced.contains(&format!("\"{p}\"")))
        .collect();
    assert!(
        unread.is_empty(),
        "parameters no property reads: {unread:?}"
    );
    for property in [
        "AutoscaleMaxWorkers",
        "AutoscaleMinWorkers",
        "AutoscaleInstanceType",
        "AutoscaleDiskSize",
        "AutoscaleStandbyWorkers",
        "AutoscaleDownscaleWaitSeconds",
        "OpenPorts",
        "OnDelete",
        "RestoreFromBackupId",
        "AllowReplacement",
    ] {
        assert_eq!(
            properties[property],
            format!("Hopsworks{property}"),
            "HopsworksCluster.{property}"
        );
    }
    // CloudFormation's DeletionPolicy Retain would skip the resource's Delete, and with it the
    // backup OnDelete asks for; retain is the resource's own.
    let resource = &template["Resources"]["HopsworksCluster"];
    assert!(
        resource.get("DeletionPolicy").is_none_or(|p| p == "Delete"),
        "HopsworksCluster's DeletionPolicy: {}",
        resource["DeletionPolicy"]
    );
}

/// `aws logs tail <HopsworksClusterLogGroup> --follow` follows the cluster's progress.
#[test]
fn an_output_names_the_hopsworks_cluster_functions_log_group() {
    let template = template();
    let function = &template["Resources"]["HopsworksClusterFunction"]["Properties"];
    let group = function["LoggingConfig"]["LogGroup"]
        .as_str()
        .expect("HopsworksClusterFunction's log group");
    let output = &template["Outputs"]["HopsworksClusterLogGroup"];
    assert_eq!(output["Value"], group, "{output}");
    assert_eq!(output["Condition"], "CreateCluster", "{output}");
}

/// The Step 6 parameters refuse on the form what the function would refuse later (CloudFormation
/// checks them before it makes or changes anything), and accept each documented shape.
#[test]
fn the_day_2_parameters_refuse_on_the_form_what_the_function_refuses() {
    let template = template();
    let declared = template["Parameters"].as_object().expect("Parameters");
    let check = |name: &str, value: &str| {
        let values = [(name.to_owned(), Value::from(value))]
            .into_iter()
            .collect();
        system_tests::parameters::check(declared, &values)
    };
    for (name, value) in [
        ("HopsworksOpenPorts", ""),
        (
            "HopsworksOpenPorts",
            "FeatureStore, OnlineFeatureStore,Kafka,Ssh",
        ),
        ("HopsworksOnDelete", "retain"),
        ("HopsworksRestoreFromBackupId", ""),
        (
            "HopsworksRestoreFromBackupId",
            "5e1d2c3b-aaaa-bbbb-cccc-000000000001",
        ),
        ("HopsworksAllowReplacement", "true"),
        ("HopsworksAutoscaleStandbyWorkers", "0"),
        ("HopsworksAutoscaleStandbyWorkers", "1"),
        ("HopsworksAutoscaleDownscaleWaitSeconds", "86400"),
        ("HopsworksAutoscaleMaxWorkers", "100"),
    ] {
        assert_eq!(check(name, value), Ok(()), "{name}={value:?}");
    }
    for (name, value) in [
        ("HopsworksOpenPorts", "Kafka,Http"),
        ("HopsworksOpenPorts", "kafka"),
        ("HopsworksOnDelete", "keep"),
        // The id goes into the URL path of the restore call.
        ("HopsworksRestoreFromBackupId", "../clusters/x"),
        ("HopsworksRestoreFromBackupId", "id?x=1"),
        ("HopsworksAllowReplacement", "yes"),
        ("HopsworksAutoscaleStandbyWorkers", "1.5"),
        ("HopsworksAutoscaleStandbyWorkers", "-0.5"),
        ("HopsworksAutoscaleDownscaleWaitSeconds", "86401"),
        ("HopsworksAutoscaleMaxWorkers", "101"),
        ("HopsworksAutoscaleDiskSize", "32"),
    ] {
        let refused = check(name, value).expect_err(&format!("{name}={value:?} is accepted"));
        assert!(refused.contains(name), "{refused}");
    }
}

/// With EksAccessSubnetIds the EksAccess function runs in the cluster's VPC, and its role may
/// make, read and remove network interfaces there (what Lambda calls with it); without, neither.
#[test]
fn the_eks_access_function_joins_a_vpc_and_gets_network_interfaces_only_when_asked() {
    let template = template();
    let resources = template["Resources"].as_object().expect("Resources");
    let vpc = &resources["EksAccessFunction"]["Properties"]["VpcConfig"];
    assert_eq!(vpc[0], "EksAccessInVpc", "VpcConfig: {vpc}");
    assert_eq!(vpc[2], "AWS::NoValue", "VpcConfig: {vpc}");
    assert_eq!(
        vpc[1]["SecurityGroupIds"],
        serde_json::json!(["EksAccessSecurityGroupId"])
    );
    let (policy, condition) = role_policy(resources, "EksAccessRole", "vpc-network-interfaces");
    assert_eq!(condition, Some("EksAccessInVpc"));
    let mut found = BTreeSet::new();
    actions(&policy["PolicyDocument"], &mut found);
    let wanted: BTreeSet<String> = [
        "ec2:CreateNetworkInterface",
        "ec2:DescribeNetworkInterfaces",
        "ec2:DeleteNetworkInterface",
        "ec2:AssignPrivateIpAddresses",
        "ec2:UnassignPrivateIpAddresses",
    ]
    .map(str::to_owned)
    .into();
    assert_eq!(found, wanted);
    // Interfaces are made with the given security group only.
    let create = &policy["PolicyDocument"]["Statement"][0];
    assert_eq!(create["Action"], "ec2:CreateNetworkInterface");
    assert!(
        create["Resource"]
            .to_string()
            .contains("security-group/${EksAccessSecurityGroupId}"),
        "{create}"
    );
    // In a VPC exactly when subnets (and so, by the rule, a security group) are given.
    assert_eq!(
        template["Conditions"]["EksAccessInVpc"].to_string(),
        r#"[[["EksAccessSubnetIds",""]],[["EksAccessSecurityGroupId",""]]]"#,
    );
    let rule = template["Rules"]["EksAccessNetworkIsWhole"].to_string();
    assert!(
        rule.contains("EksAccessSubnetIds") && rule.contains("EksAccessSecurityGroupId"),
        "{rule}"
    );
}

/// With ApiKeySecretKmsKeyArn, the HopsworksCluster role may decrypt with that key, through
/// Secrets Manager in the stack's region only; without, the policy is not there.
#[test]
fn the_api_keys_customer_key_is_usable_through_secrets_manager_only() {
    let template = template();
    let resources = template["Resources"].as_object().expect("Resources");
    let (policy, condition) = role_policy(resources, "HopsworksClusterRole", "decrypt-api-key");
    assert_eq!(condition, Some("HasSecretKmsKey"));
    let statements = policy["PolicyDocument"]["Statement"]
        .as_array()
        .expect("statements");
    assert_eq!(statements.len(), 1, "{statements:?}");
    let statement = &statements[0];
    assert_eq!(statement["Effect"], "Allow");
    assert_eq!(statement["Action"], "kms:Decrypt");
    assert_eq!(statement["Resource"], "ApiKeySecretKmsKeyArn");
    assert_eq!(
        statement["Condition"],
        serde_json::json!({"StringEquals": {"kms:ViaService": "secretsmanager.${AWS::Region}.amazonaws.com"}})
    );
}

/// EKS writes the control-plane logs to /aws/eks/<name>/cluster: the stack makes that group
/// first, with a retention, and deletes it after the cluster.
#[test]
fn the_new_clusters_control_plane_log_group_is_the_stacks_with_a_retention() {
    let template = template();
    let resources = template["Resources"].as_object().expect("Resources");
    let group = &resources["NewClusterLogGroup"];
    assert_eq!(group["Type"], "AWS::Logs::LogGroup");
    assert_eq!(group["Condition"], "NewEksCluster");
    assert_eq!(group["DeletionPolicy"], "Delete");
    assert_eq!(
        group["Properties"]["LogGroupName"],
        "/aws/eks/${EksClusterName}/cluster"
    );
    assert_eq!(group["Properties"]["RetentionInDays"], "LogRetentionDays");
    let cluster = &resources["NewCluster"];
    assert!(
        cluster["DependsOn"]
            .as_array()
            .is_some_and(|d| d.contains(&Value::from("NewClusterLogGroup"))),
        "NewCluster does not wait for its log group: {}",
        cluster["DependsOn"]
    );
    assert_eq!(cluster["Properties"]["Name"], "EksClusterName");
    let logging = &cluster["Properties"]["Logging"]["ClusterLogging"]["EnabledTypes"];
    assert_ne!(
        logging.as_array().map_or(0, Vec::len),
        0,
        "no control-plane logging"
    );
}

/// The new parameters refuse on the form what AWS or the functions would refuse later.
#[test]
fn the_network_key_and_tag_parameters_refuse_what_aws_refuses() {
    let template = template();
    let declared = template["Parameters"].as_object().expect("Parameters");
    let check = |name: &str, value: &str| {
        let values = [(name.to_owned(), Value::from(value))]
            .into_iter()
            .collect();
        system_tests::parameters::check(declared, &values)
    };
    for (name, value) in [
        ("EksAccessSubnetIds", ""),
        (
            "EksAccessSubnetIds",
            "subnet-0123456789abcdef0,subnet-01234567",
        ),
        ("EksAccessSecurityGroupId", "sg-0123456789abcdef0"),
        ("ApiKeySecretKmsKeyArn", ""),
        (
            "ApiKeySecretKmsKeyArn",
            "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        ),
        (
            "ApiKeySecretKmsKeyArn",
            "arn:aws:kms:eu-west-1:123456789012:key/mrk-1234abcd12ab34cd56ef1234567890ab",
        ),
        ("Tags", ""),
        ("Tags", "team=data,cost-center=47=11,owner=Jane Doe"),
        ("NewClusterPublicAccessCidrs", "0.0.0.0/0"),
        (
            "NewClusterPublicAccessCidrs",
            "203.0.113.0/24,198.51.100.7/32",
        ),
        ("NewClusterFlowLogs", "true"),
    ] {
        assert_eq!(check(name, value), Ok(()), "{name}={value:?}");
    }
    for (name, value) in [
        (
            "EksAccessSubnetIds",
            "subnet-0123456789abcdef0, subnet-01234567",
        ),
        ("EksAccessSubnetIds", "sg-0123456789abcdef0"),
        ("EksAccessSecurityGroupId", "subnet-0123456789abcdef0"),
        ("ApiKeySecretKmsKeyArn", "alias/hopsworks"),
        (
            "ApiKeySecretKmsKeyArn",
            "arn:aws:kms:eu-west-1:123456789012:alias/hopsworks",
        ),
        ("Tags", "team"),
        ("Tags", "=data"),
        ("Tags", "team=data,"),
        ("Tags", "team=a,b"),
        ("NewClusterPublicAccessCidrs", ""),
        (
            "NewClusterPublicAccessCidrs",
            "203.0.113.0/24, 198.51.100.7/32",
        ),
        ("NewClusterPublicAccessCidrs", "203.0.113.0/33"),
        ("NewClusterFlowLogs", "yes"),
    ] {
        let refused = check(name, value).expect_err(&format!("{name}={value:?} is accepted"));
        assert!(refused.contains(name), "{refused}");
    }
}

/// The stack's Tags reach what its functions make, and are absent (not empty) when there are
/// none: an empty Tags added to a stack made before the parameter would change the Hopsworks
/// cluster's replacing properties.
#[test]
fn tags_reach_the_custom_resources_and_are_absent_when_empty() {
    let template = template();
    for resource in ["HopsworksCluster", "EksAccess", "SecurityGroupIngress"] {
        assert_eq!(
            template["Resources"][resource]["Properties"]["Tags"],
            serde_json::json!(["HasTags", "Tags", "AWS::NoValue"]),
            "{resource}.Tags"
        );
    }
}
