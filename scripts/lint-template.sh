#!/usr/bin/env bash
# Lint the SAM template the way CI does (`make lint-template`), offline: no AWS credentials and no
# network are needed.
#   1. cfn-lint (expands the SAM transform itself), in the regions below;
#   2. `sam validate --lint` (cfn-lint again, in-process, through the SAM CLI as users run it; it
#      opens no connection. Plain `sam validate` builds an IAM client to look up managed policies
#      and goes looking for credentials, so it is not used);
#   3. checkov, where every skipped check must carry a justification beside its resource;
#   4. the Marketplace rules cfn-lint and checkov do not check: size, no hard-coded account,
#      region or partition in Resources and Outputs.
# Tools come from the venvs `make lint-venv` builds (LINT_VENV, CHECKOV_VENV to override).
# CFN_LINT_REGIONS=ALL_REGIONS lints every region (about 2 minutes instead of a few seconds).
set -euo pipefail
cd "$(dirname "$0")/.."

template=${TEMPLATE:-templates/template.yaml}
lint_venv=${LINT_VENV:-.venv/lint}
checkov_venv=${CHECKOV_VENV:-.venv/checkov}
# Regions a Marketplace buyer is likely to pick, across the US, Europe and Asia Pacific.
regions=${CFN_LINT_REGIONS:-us-east-1 us-east-2 us-west-2 eu-west-1 eu-central-1 eu-north-1 ap-southeast-1 ap-northeast-1}

for tool in "$lint_venv/bin/cfn-lint" "$lint_venv/bin/sam" "$checkov_venv/bin/checkov"; do
  [[ -x $tool ]] || { echo "lint-template: $tool is missing: run make lint-venv" >&2; exit 2; }
done

# Nothing here may reach AWS: no credentials from the environment, no telemetry.
export SAM_CLI_TELEMETRY=0
unset AWS_PROFILE AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN

step() { printf '\n== %s\n' "$*"; }

step "cfn-lint $("$lint_venv/bin/cfn-lint" --version | awk '{print $2}') ($regions)"
# shellcheck disable=SC2086 # the region list is meant to split
"$lint_venv/bin/cfn-lint" --include-checks I --regions $regions -- "$template"
echo "cfn-lint: no errors, warnings or informational findings"

step "sam validate --lint ($("$lint_venv/bin/sam" --version))"
"$lint_venv/bin/sam" validate --lint --template-file "$template" --region us-east-1

step "checkov $("$checkov_venv/bin/checkov" --version)"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Checkov reports a declared skip as skipped whether or not the check would fail, so it also runs
# on a copy without the skips: every skip must stand for a check that fails there.
"$lint_venv/bin/python" - "$template" "$work/unskipped.json" <<'PY'
import json
import sys

from cfnlint.decode import decode

template, errors = decode(sys.argv[1])
if errors:
    sys.exit(f"{sys.argv[1]}: does not parse: {errors}")
for resource in template.get("Resources", {}).values():
    (resource.get("Metadata") or {}).pop("checkov", None)
with open(sys.argv[2], "w") as out:
    json.dump(template, out)
PY
# --skip-download: do not fetch guidelines from Prisma Cloud (offline; the checks are the same).
# Exit codes are not trusted alone: the JSON reports are read below.
for run in template:"$template" unskipped:"$work/unskipped.json"; do
  "$checkov_venv/bin/checkov" -f "${run#*:}" --framework cloudformation --skip-download \
    --output json > "$work/${run%%:*}.checkov.json" || true
done

step "checkov results, skips, Marketplace rules"
"$lint_venv/bin/python" - "$template" "$work" <<'PY'
import json
import re
import sys
from pathlib import Path

from cfnlint.decode import decode

path, work = Path(sys.argv[1]), Path(sys.argv[2])
template, errors = decode(str(path))
if errors:
    sys.exit(f"{path}: does not parse: {errors}")
problems = []


def checkov(run):
    try:
        report = json.loads((work / f"{run}.checkov.json").read_text())
    except ValueError as e:
        sys.exit(f"checkov gave no JSON report for the {run} run ({e}); run it by hand")
    if isinstance(report, list):  # one report per framework
        report = next(r for r in report if r.get("check_type") == "cloudformation")
    return report["summary"], report["results"]


# checkov: no failed check, no parsing error.
summary, results = checkov("template")
print(f"checkov: passed {summary['passed']}, failed {summary['failed']}, skipped "
      f"{summary['skipped']}, parsing errors {summary['parsing_errors']}, "
      f"resources {summary['resource_count']}")
if summary["parsing_errors"]:
    problems.append(f"checkov could not parse the template ({summary['parsing_errors']} errors)")
for failed in results["failed_checks"]:
    problems.append(f"checkov {failed['check_id']} FAILED on {failed['resource']} (lines "
                    f"{failed['file_line_range']}): {failed['check_name']}; fix it, or skip it "
                    "beside the resource with a comment saying why")
unskipped_summary, unskipped = checkov("unskipped")
failing = {(c["check_id"], c["resource"].split(".")[-1]) for c in unskipped["failed_checks"]}
print(f"checkov without the skips: failed {unskipped_summary['failed']} (each must be skipped, "
      "with a reason, below)")

# Every skip names a check and says why, beside its resource, and skips something checkov checks.
skips = []
for name, resource in template.get("Resources", {}).items():
    for skip in (resource.get("Metadata") or {}).get("checkov", {}).get("skip", []):
        comment = str(skip.get("comment", "")).strip()
        if not re.fullmatch(r"CKV2?_AWS_\d+", str(skip.get("id", ""))) or len(comment) < 40:
            problems.append(f"{name}: checkov skip {skip!r} needs a check id and a justification")
        elif (skip["id"], name) not in failing:
            problems.append(f"{name}: checkov skip {skip['id']} skips nothing (the check passes or "
                            "does not apply): remove it")
        skips.append((skip.get("id"), name))

# AWS Marketplace: under 1 MB; no account, region or partition written into Resources or Outputs
# (the one account allowed is Hopsworks.ai's ECR account, kept in Mappings).
size = path.stat().st_size
if size >= 1_000_000:
    problems.append(f"template is {size} bytes; CloudFormation's limit is 1 MB")


def strings(node, where):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from strings(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from strings(value, f"{where}/{i}")
    elif isinstance(node, str):
        yield where, node


region = re.compile(r"\b(us|eu|ap|sa|ca|me|af|il|mx|cn)-(gov-)?(north|south|east|west|central|northeast|southeast|northwest|southwest)-\d\b")
for section in ("Resources", "Outputs"):
    for where, text in strings(template.get(section, {}), section):
        if where.endswith("/Description") or "/Metadata/" in where:
            continue
        if re.search(r"arn:aws[:-]", text):
            problems.append(f"{where}: {text!r} hard-codes the partition; use ${{AWS::Partition}}")
        if re.search(r"(?<!\d)\d{12}(?!\d)", text):
            problems.append(f"{where}: {text!r} hard-codes an account id")
        if region.search(text):
            problems.append(f"{where}: {text!r} hard-codes a region; use ${{AWS::Region}}")

for problem in problems:
    print(problem, file=sys.stderr)
if problems:
    sys.exit(1)
print(f"template: {size} bytes (limit 1 MB); no hard-coded account, region or partition in Resources/Outputs")
print(f"checkov skips, each justified beside its resource ({len(skips)}):")
for check in sorted({c for c, _ in skips}):
    print(f"  {check}: {', '.join(sorted(n for c, n in skips if c == check))}")
PY

step "template lint passed"
