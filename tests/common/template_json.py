"""Prints a CloudFormation/SAM template as plain JSON on stdout, for the Rust template tests.

Uses cfn-lint's own YAML loader, so the short-form tags (!Ref, !GetAtt, !Sub, ...) become
their long forms ({"Ref": ...}, {"Fn::GetAtt": [...]}) exactly as CloudFormation reads them.
With --transformed it prints what the SAM transform (aws-sam-translator, which cfn-lint
installs) expands the template into, as `sam deploy` would. It must not interpret the
template: the checks live in the Rust tests.

Usage: python template_json.py [--transformed] <template.yaml>
"""

import json
import os
import sys

from cfnlint.decode import cfn_yaml


def sam_transform(template):
    from samtranslator.translator.transform import transform

    class NoManagedPolicies:
        # The transform asks for AWS-managed policy ARNs only when it generates a role;
        # an empty map makes any such request visible in the output instead of hidden.
        def load(self):
            return {}

    # `sam build` replaces CodeUri with the built artifact's S3 location.
    template["Globals"]["Function"]["CodeUri"] = "s3://sam-artifacts/sync-ledger.zip"
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    return transform(template, {}, NoManagedPolicies())


def main() -> int:
    args = sys.argv[1:]
    transformed = "--transformed" in args
    args = [a for a in args if a != "--transformed"]
    if len(args) != 1:
        print("usage: template_json.py [--transformed] <template.yaml>", file=sys.stderr)
        return 2
    template = json.loads(json.dumps(cfn_yaml.load(args[0])))
    if transformed:
        template = sam_transform(template)
    json.dump(template, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
