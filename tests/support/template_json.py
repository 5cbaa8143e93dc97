"""Prints a CloudFormation/SAM template as plain JSON on stdout, for tests/template_checks.rs.

Uses cfn-lint's own YAML loader, so the short-form tags (!Ref, !GetAtt, !Sub, ...) become
their long forms ({"Ref": ...}, {"Fn::GetAtt": [...]}) exactly as CloudFormation reads them.
It must not interpret the template: the checks live in the Rust test.

Usage: python template_json.py <template.yaml>
"""

import json
import sys

from cfnlint.decode import cfn_yaml


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: template_json.py <template.yaml>", file=sys.stderr)
        return 2
    template = cfn_yaml.load(sys.argv[1])
    json.dump(template, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
