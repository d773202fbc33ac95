"""Expand the SAM template as `sam package` + CloudFormation's SAM transform would, offline.

Usage: .venv/lint/bin/python tests/bench/expand_template.py TEMPLATE > expanded.json

Each function's CodeUri becomes s3://local-bench/<binary>.zip, as `sam package` would point it at
the uploaded zip; then the real translator (aws-sam-translator) expands the transform. The result is
plain CloudFormation, which the bench's stack engine deploys (tests/src/stack.rs).
"""

import json
import os
import sys

from cfnlint.decode import decode
from samtranslator.translator.transform import transform


class NoManagedPolicies:
    """The template names no managed policies by name, so none need looking up in IAM."""

    def load(self):
        return {}


def main():
    template, errors = decode(sys.argv[1])
    if errors:
        sys.exit(f"{sys.argv[1]} does not parse: {errors}")
    template = json.loads(json.dumps(template, default=str))
    for resource in template["Resources"].values():
        if resource.get("Type") == "AWS::Serverless::Function":
            binary = resource["Metadata"]["BuildProperties"]["Binary"]
            resource["Properties"]["CodeUri"] = f"s3://local-bench/{binary}.zip"
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-2")
    json.dump(transform(template, {}, NoManagedPolicies()), sys.stdout, indent=1)


if __name__ == "__main__":
    main()
