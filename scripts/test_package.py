"""Tests of scripts/package.py (`make test-package`, part of `make test`): everything `make package`
does after the cargo build, on fake bootstraps (a few bytes behind an ELF header), so they take
seconds and need no release build.

  .venv/lint/bin/python -m unittest discover -s scripts -p test_package.py
"""

import contextlib
import io
import json
import os
import stat
import struct
import subprocess
import sys
import tempfile
import unittest
import urllib.parse
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import package  # noqa: E402

BINARIES = ["cluster-discovery", "eks-access", "security-group-ingress", "hopsworks-cluster"]
CFN_LINT = Path(sys.executable).parent / "cfn-lint"


def fake_bootstrap(path, machine, body):
    """An ELF64 little-endian header for `machine`, then `body`: enough for package.py."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8) + struct.pack("<HHI", 2, machine, 1)
    path.write_bytes(header + bytes(44) + body)
    path.chmod(0o755)


def default_prefix():
    """The key prefix when none is given: one per version of the template."""
    application = package.load_template(package.TEMPLATE)["Metadata"]["AWS::ServerlessRepo::Application"]
    return f"hopsworks-eks-stack/{application['SemanticVersion']}"


def run_package(bin_dir, out, *extra):
    args = ["--bucket", "example-bucket", "--bin-dir", str(bin_dir), "--out", str(out), *extra]
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        package.main(args)
    return json.loads((out / "manifest.json").read_text()), printed.getvalue()


def cfn_lint(*templates):
    result = subprocess.run(
        [str(CFN_LINT), "--include-checks", "I", "--regions", "us-east-1", "eu-west-1", "--", *map(str, templates)],
        capture_output=True,
        text=True,
    )
    return result.returncode, result.stdout + result.stderr


class PackageTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        root = Path(cls.tmp.name)
        cls.bin_dir = root / "bin"
        for binary in BINARIES:
            fake_bootstrap(cls.bin_dir / binary / "bootstrap", 62, f"{binary} ".encode() * 500)
        cls.out = root / "dist"
        cls.manifest, cls.printed = run_package(
            cls.bin_dir, cls.out, "--region", "eu-west-1",
            "--param", "HopsworksInstanceProfile=arn:aws:iam::123456789012:instance-profile/a/hops+1",
        )
        cls.template = json.loads((cls.out / "template.json").read_text())
        cls.policy = json.loads((cls.out / "launch-policy.json").read_text())
        cls.regional_out = root / "regional"
        cls.regional, _ = run_package(
            cls.bin_dir, cls.regional_out, "--bucket-per-region", "--region", "eu-west-1",
            "--regions", "eu-west-1 us-east-1", "--prefix", "releases/1",
        )
        cls.regional_template = json.loads((cls.regional_out / "template.json").read_text())

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_zip_has_an_executable_bootstrap_at_its_root(self):
        for binary in BINARIES:
            entry = self.manifest["functions"][binary]
            with zipfile.ZipFile(self.out / entry["zip"]) as archive:
                [info] = archive.infolist()
                self.assertEqual(info.filename, "bootstrap")
                self.assertEqual(info.external_attr >> 16, stat.S_IFREG | 0o755)
                self.assertEqual(archive.read(info), (self.bin_dir / binary / "bootstrap").read_bytes())
            self.assertEqual(entry["zip_bytes"], (self.out / entry["zip"]).stat().st_size)

    def test_zip_is_named_by_its_content_and_the_same_every_time(self):
        again, _ = run_package(self.bin_dir, Path(self.tmp.name) / "again", "--region", "eu-west-1")
        for binary in BINARIES:
            entry = self.manifest["functions"][binary]
            self.assertEqual(again["functions"][binary]["zip"], entry["zip"])
            self.assertTrue(entry["zip"].startswith(f"{binary}-{entry['sha256'][:16]}"))

    def test_template_points_at_the_zips_without_build_metadata(self):
        prefix = default_prefix()
        functions = {n: r for n, r in self.template["Resources"].items() if r["Type"] == "AWS::Serverless::Function"}
        self.assertEqual(len(functions), len(BINARIES))
        zips = {z["zip"] for z in self.manifest["functions"].values()}
        for name, resource in functions.items():
            uri = resource["Properties"]["CodeUri"]
            self.assertRegex(uri, rf"^s3://example-bucket/{prefix}/[a-z-]+-[0-9a-f]{{16}}\.zip$", name)
            self.assertIn(uri.rsplit("/", 1)[1], zips)
            self.assertNotIn("BuildProperties", resource.get("Metadata", {}))
            self.assertNotIn("BuildMethod", resource.get("Metadata", {}))
        readme = self.template["Metadata"]["AWS::ServerlessRepo::Application"]["ReadmeUrl"]
        self.assertTrue((self.out / readme.rsplit("/", 1)[1]).is_file(), readme)

    def test_template_carries_the_architecture_built(self):
        self.assertEqual(self.template["Globals"]["Function"]["Architectures"], ["x86_64"])
        arm = Path(self.tmp.name) / "arm"
        for binary in BINARIES:
            fake_bootstrap(arm / binary / "bootstrap", 183, b"arm")
        manifest, _ = run_package(arm, Path(self.tmp.name) / "arm-dist", "--arch", "arm64")
        template = json.loads((Path(self.tmp.name) / "arm-dist" / "template.json").read_text())
        self.assertEqual(manifest["architecture"], "arm64")
        self.assertEqual(template["Globals"]["Function"]["Architectures"], ["arm64"])
        with self.assertRaisesRegex(SystemExit, "ARCH=x86_64, but the bootstraps .* are arm64"):
            run_package(arm, Path(self.tmp.name) / "arm-dist", "--arch", "x86_64")

    def test_packaged_templates_pass_cfn_lint(self):
        code, output = cfn_lint(self.out / "template.json", self.regional_out / "template.json")
        self.assertEqual(code, 0, output)

    def test_bucket_per_region_takes_the_code_from_the_stacks_region(self):
        for binary, entry in self.regional["functions"].items():
            uri = next(
                r["Properties"]["CodeUri"] for r in self.regional_template["Resources"].values()
                if r["Type"] == "AWS::Serverless::Function" and entry["zip"] in json.dumps(r)
            )
            self.assertEqual(uri, {"Bucket": {"Fn::Sub": "example-bucket-${AWS::Region}"},
                                   "Key": f"releases/1/{entry['zip']}"})
        expanded = package.expand(self.regional_template, "ap-southeast-1")
        codes = [r["Properties"]["Code"] for r in expanded["Resources"].values() if r["Type"] == "AWS::Lambda::Function"]
        self.assertEqual(len(codes), len(BINARIES))
        for code in codes:
            self.assertEqual(code["S3Bucket"], {"Fn::Sub": "example-bucket-${AWS::Region}"})
        uploads = "\n".join(self.regional["upload"])
        for region in ("eu-west-1", "us-east-1"):
            self.assertIn(f"s3://example-bucket-{region}/releases/1/template.json --region {region}", uploads)
        self.assertEqual(
            self.regional["template_url"],
            "https://example-bucket-eu-west-1.s3.eu-west-1.amazonaws.com/releases/1/template.json",
        )

    def test_launch_policy_covers_every_resource_of_the_expanded_template(self):
        expanded = package.expand(self.template, "eu-west-1")
        types = {r["Type"] for r in expanded["Resources"].values()}
        self.assertEqual(set(self.manifest["resource_types"]), types)
        granted = {}
        for statement in self.policy["Statement"]:
            self.assertEqual(statement["Effect"], "Allow")
            for action in statement["Action"]:
                granted.setdefault(action, set()).update(statement["Resource"])
        self.assertEqual(len({s["Sid"] for s in self.policy["Statement"]}), len(self.policy["Statement"]))
        for resource_type in types:
            for grant in package.launch_actions(resource_type):
                for action in grant[0]:
                    self.assertIn(action, granted, f"{resource_type} needs {action}")
        for action in ["iam:CreateRole", "iam:PassRole", "lambda:CreateFunction", "lambda:InvokeFunction",
                       "logs:CreateLogGroup", "logs:DeleteLogGroup", "iam:PutUserPolicy", "s3:GetObject"]:
            self.assertIn(action, granted)
        self.assertEqual(granted["s3:GetObject"], {f"arn:aws:s3:::example-bucket/{default_prefix()}/*"})
        self.assertEqual(granted["iam:CreateRole"], {"arn:aws:iam::*:role/hopsworks-eks-*"})
        # each handler permission of each schema is granted, or set aside for a property not used
        for resource_type in types - {t for t in types if t.startswith("Custom::")}:
            set_aside = {a for _, actions in package.NOT_NEEDED.get(resource_type, []) for a in actions}
            missing = package.schema_permissions(resource_type, "eu-west-1") - set(granted) - set_aside
            self.assertEqual(missing, set(), resource_type)
        self.assertEqual(self.manifest["capabilities"], ["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"])

    def test_an_unmapped_resource_type_fails_the_packaging(self):
        template = json.loads(json.dumps(self.template))
        template["Resources"]["Topic"] = {"Type": "AWS::SNS::Topic", "Properties": {}}
        expanded = package.expand(template, "eu-west-1")
        location = package.Location("example-bucket", "p", "eu-west-1", False)
        with self.assertRaisesRegex(package.PackageError, "AWS::SNS::Topic resource, which LAUNCH_ACTIONS"):
            package.launch_policy(expanded, location, "hopsworks-eks", "eu-west-1")

    def test_a_property_needing_more_permissions_fails_the_packaging(self):
        template = json.loads(json.dumps(self.template))
        template["Resources"]["EksAccessFunction"]["Properties"]["ReservedConcurrentExecutions"] = 2
        expanded = package.expand(template, "eu-west-1")
        location = package.Location("example-bucket", "p", "eu-west-1", False)
        with self.assertRaisesRegex(package.PackageError, "sets ReservedConcurrentExecutions, so the launch"):
            package.launch_policy(expanded, location, "hopsworks-eks", "eu-west-1")

    def test_quick_create_url_decodes_to_the_template_url(self):
        url = urllib.parse.urlsplit(self.manifest["quick_create_url"])
        self.assertEqual((url.scheme, url.netloc, url.path), ("https", "console.aws.amazon.com", "/cloudformation/home"))
        self.assertEqual(urllib.parse.parse_qs(url.query), {"region": ["eu-west-1"]})
        path, _, query = url.fragment.partition("?")
        self.assertEqual(path, "/stacks/create/review")
        self.assertNotIn("/", query.replace("%2F", ""))  # every reserved character is encoded
        params = urllib.parse.parse_qs(query, keep_blank_values=True, strict_parsing=True)
        self.assertEqual(params["templateURL"], [self.manifest["template_url"]])
        self.assertEqual(params["stackName"], ["hopsworks-eks"])
        self.assertEqual(params["param_HopsworksInstanceProfile"],
                         ["arn:aws:iam::123456789012:instance-profile/a/hops+1"])
        for name in package.USUAL_PARAMETERS:
            self.assertIn(f"param_{name}", params)
        template_url = urllib.parse.urlsplit(self.manifest["template_url"])
        self.assertEqual(template_url.netloc, "example-bucket.s3.eu-west-1.amazonaws.com")
        self.assertEqual(template_url.path, f"/{default_prefix()}/template.json")
        self.assertIn(self.manifest["quick_create_url"], self.printed)

    def test_wrong_input_is_refused_with_what_to_do(self):
        out = Path(self.tmp.name) / "refused"
        cases = [
            (["--bucket", "Example.Bucket"], "bucket 'Example.Bucket': give an S3 bucket name"),
            (["--param", "EksClusterName=arn:aws:eks:x"], "EksClusterName='arn:aws:eks:x': 2 to 100 letters"),
            (["--param", "NoSuchParameter=1"], "the template has no such parameter"),
            (["--stack-name", "9lives"], "stack name '9lives': a letter, then"),
            (["--bin-dir", str(out / "nothing")], "bootstrap is missing: run make release"),
        ]
        for extra, message in cases:
            args = ["--bucket", "example-bucket", "--bin-dir", str(self.bin_dir), "--out", str(out), *extra]
            with self.subTest(extra=extra), self.assertRaisesRegex(SystemExit, message):
                package.main(args)
        not_elf = Path(self.tmp.name) / "not-elf"
        for binary in BINARIES:
            (not_elf / binary).mkdir(parents=True)
            (not_elf / binary / "bootstrap").write_text("#!/bin/sh\n")
        with self.assertRaisesRegex(SystemExit, "is not a 64-bit little-endian ELF executable"):
            package.main(["--bucket", "b-b-b", "--bin-dir", str(not_elf), "--out", str(out)])


class ReleaseDirTest(unittest.TestCase):
    """scripts/release.sh puts this machine's architecture where the bench looks, the other beside."""

    def print_dir(self, arch):
        script = Path(package.__file__).parent / "release.sh"
        env = {"PATH": "/usr/bin:/bin:" + str(Path.home() / ".cargo/bin"), "HOME": str(Path.home()),
               "ARCH": arch, "CARGO_TARGET_DIR": "/t"}
        return subprocess.run(["bash", str(script), "--print-dir"], capture_output=True, text=True, env=env)

    def test_host_architecture_goes_to_cargo_lambdas_standard_place(self):
        host = {"x86_64": "x86_64", "aarch64": "arm64"}[os.uname().machine]
        other = {"x86_64": "arm64", "arm64": "x86_64"}[host]
        self.assertEqual(self.print_dir("host").stdout, "/t/lambda\n")
        self.assertEqual(self.print_dir(host).stdout, "/t/lambda\n")
        result = self.print_dir(other)
        if result.returncode == 0:  # arm64 from x86_64 needs its Rust target installed
            self.assertEqual(result.stdout, f"/t/lambda-{other}\n")
        else:
            self.assertIn("rustup target add", result.stderr)

    def test_an_unknown_architecture_is_refused(self):
        result = self.print_dir("sparc")
        self.assertEqual(result.returncode, 2)
        self.assertIn("ARCH must be host, arm64, x86_64 or auto", result.stderr)


if __name__ == "__main__":
    unittest.main()
