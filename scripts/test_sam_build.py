"""`sam build` as users run it (`make test-sam`, part of `make test`): the real SAM CLI (.venv/lint)
and the real cargo-lambda (.venv/package) on the repository's samconfig.toml and template, with a
stand-in `cargo` first on PATH so that nothing compiles. The stand-in records what SAM asks of cargo
(`cargo lambda build …`) and hands it on to cargo-lambda, as cargo does; it records what
cargo-lambda then asks (`cargo build …`) and writes the binary where cargo would, and cargo-lambda
makes target/lambda/<binary>/bootstrap of it, for SAM to copy. Seconds; no release build, no Docker,
no network, nothing written in the repository (build, cache and target directories are temporary).

  .venv/lint/bin/python -m unittest discover -s scripts -p test_sam_build.py
  PACKAGE_VENV=.venv/package (where cargo-lambda is; `make test-sam` builds it)
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

from samcli.lib.utils.hash import dir_checksum
from samcli.yamlhelper import yaml_parse

ROOT = Path(__file__).resolve().parent.parent
SAM = Path(sys.executable).parent / "sam"
PACKAGE_VENV = (ROOT / os.environ.get("PACKAGE_VENV", ".venv/package")).resolve()
# The template's functions and the binaries they build.
FUNCTIONS = {
    "ClusterDiscoveryFunction": "cluster-discovery",
    "EksAccessFunction": "eks-access",
    "SecurityGroupIngressFunction": "security-group-ingress",
    "HopsworksClusterFunction": "hopsworks-cluster",
}
ARM64 = "aarch64-unknown-linux-gnu"

STAND_IN = r'''#!{python}
"""A stand-in for cargo (scripts/test_sam_build.py)."""
import json, os, sys

args = sys.argv[1:]


def record(caller):
    entry = {{"caller": caller, "args": args, "cwd": os.getcwd(),
             "target_dir": os.environ.get("CARGO_TARGET_DIR")}}
    with open({log!r}, "a") as log:
        log.write(json.dumps(entry) + "\n")


if args[:1] == ["lambda"]:
    # SAM's `cargo lambda build …`: cargo runs its cargo-lambda subcommand with the same arguments.
    record("sam")
    os.environ["CARGO"] = __file__
    os.execv({cargo_lambda!r}, [{cargo_lambda!r}, *args])
elif args[:1] == ["build"]:
    # cargo-lambda's compile: the binary goes where cargo puts it, <target dir>/<triple>/<profile>/.
    record("cargo-lambda")
    triple = args[args.index("--target") + 1]
    binary = args[args.index("--bin") + 1]
    out = os.path.join(os.environ["CARGO_TARGET_DIR"], triple,
                       "release" if "--release" in args else "debug", binary)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        f.write(f"stand-in {{binary}} for {{triple}}\n")
    os.chmod(out, 0o755)
else:
    # cargo metadata, cargo --version …: the real cargo.
    os.execv({cargo!r}, [{cargo!r}, *args])
'''


def repository_outputs():
    """What a `sam build` in the repository would leave there: .aws-sam/ and cargo-lambda's
    bootstraps in target/lambda/ (with their times)."""
    found = {str(p): p.stat().st_mtime_ns for p in (ROOT / "target" / "lambda").glob("*/bootstrap")}
    found[".aws-sam"] = (ROOT / ".aws-sam").exists()
    return found


def stand_in_bytes(binary):
    return f"stand-in {binary} for {ARM64}\n".encode()


class SamBuildTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cargo = shutil.which("cargo")
        cargo_lambda = PACKAGE_VENV / "bin" / "cargo-lambda"
        for tool, name, hint in [(cargo, "cargo", "install Rust"), (SAM, SAM, "make lint-venv"),
                                 (cargo_lambda, cargo_lambda, "make test-sam")]:
            if not tool or not Path(tool).exists():
                raise AssertionError(f"{name} is missing: {hint}")
        cls.repository_before = repository_outputs()
        cls.tmp = tempfile.TemporaryDirectory()
        tmp = Path(cls.tmp.name)
        cls.log = tmp / "cargo.jsonl"
        cls.target_dir = tmp / "target"
        cls.build_dir = tmp / "sam" / "build"
        cls.cache_dir = tmp / "sam" / "cache"
        bin_dir = tmp / "bin"
        bin_dir.mkdir()
        stand_in = bin_dir / "cargo"
        stand_in.write_text(
            STAND_IN.format(python=sys.executable, log=str(cls.log), cargo=cargo, cargo_lambda=str(cargo_lambda))
        )
        stand_in.chmod(0o755)
        # No AWS credentials or SAM settings from outside; no cargo settings that would move the
        # build elsewhere (CARGO_HOME and RUSTUP_HOME stay: the real cargo needs them).
        unset = {"CARGO", "CARGO_TARGET_DIR", "CARGO_BUILD_TARGET_DIR"}
        env = {
            k: v for k, v in os.environ.items()
            if k not in unset and not k.startswith(("AWS_", "SAM_", "CARGO_LAMBDA"))
        }
        env.update(
            PATH=os.pathsep.join([str(bin_dir), str(cargo_lambda.parent), env["PATH"]]),
            SAM_CLI_TELEMETRY="0",
            # SAM keeps an explicit target directory (and so does `cargo metadata`, which both SAM
            # and cargo-lambda ask where it is): the repository's target/ is left alone.
            CARGO_TARGET_DIR=str(cls.target_dir),
            # Nothing compiles, so the arm64 Rust target need not be installed (cargo-lambda would
            # otherwise install it with rustup).
            **{"CARGO_LAMBDA_BUILD.SKIP_TARGET_CHECK": "true"},
        )
        cls.env = env
        # What users run (samconfig.toml gives the template), only into a temporary directory.
        cls.output = cls.sam("build", "--build-dir", str(cls.build_dir))
        cls.calls = cls.read_log()
        cls.built = yaml_parse((cls.build_dir / "template.yaml").read_text())
        # What `sam sync` runs (it always builds with --cached): once to fill the cache, once to use it.
        cls.cached_output = cls.sam(*cls.cached_args())
        cls.cached_calls = cls.read_log()[len(cls.calls):]
        cls.recached_output = cls.sam(*cls.cached_args())
        cls.recached_calls = cls.read_log()[len(cls.calls) + len(cls.cached_calls):]

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    @classmethod
    def cached_args(cls):
        # From a temporary directory: a cached build makes .aws-sam/deps in the one it runs in.
        return ["build", "--cached", "--template-file", str(ROOT / "templates" / "template.yaml"),
                "--cache-dir", str(cls.cache_dir), "--build-dir", str(cls.build_dir)]

    @classmethod
    def sam(cls, *args):
        cwd = cls.build_dir.parent if "--cached" in args else ROOT
        result = subprocess.run(
            [str(SAM), *args], cwd=cwd, env=cls.env, stdin=subprocess.DEVNULL,
            capture_output=True, text=True, timeout=300,
        )
        output = result.stdout + result.stderr
        if result.returncode != 0:
            raise AssertionError(f"sam {' '.join(args)} failed ({result.returncode}):\n{output}")
        return output

    @classmethod
    def read_log(cls):
        if not cls.log.exists():
            return []
        return [json.loads(line) for line in cls.log.read_text().splitlines()]

    def test_sam_asks_cargo_lambda_for_a_release_arm64_build_of_each_binary_in_its_crate(self):
        asked = [(c["args"], c["cwd"]) for c in self.calls if c["caller"] == "sam"]
        wanted = [
            (["lambda", "build", "--release", "--arm64", "--bin", binary], str(ROOT / "functions" / binary))
            for binary in FUNCTIONS.values()
        ]
        self.assertCountEqual(asked, wanted)

    def test_cargo_lambda_builds_with_the_workspace_release_profile_alone(self):
        # CargoLambda.toml disables cargo-lambda's own release settings (a target-cpu in rustflags,
        # and profile values the workspace leaves unset), as `make package` does with
        # --disable-optimizations: [profile.release] alone decides (panic = "unwind" included).
        builds = [c for c in self.calls if c["caller"] == "cargo-lambda"]
        self.assertEqual(len(builds), len(FUNCTIONS), builds)
        for call in builds:
            args = call["args"]
            binary = args[args.index("--bin") + 1]
            self.assertIn(binary, FUNCTIONS.values())
            self.assertEqual(args[args.index("--target") + 1], ARM64, args)
            self.assertIn("--release", args)
            self.assertNotIn("--config", args, "cargo-lambda added release settings of its own")
            self.assertNotIn("--profile", args)
            self.assertEqual(call["target_dir"], str(self.target_dir))

    def test_each_function_gets_the_bootstrap_of_its_binary(self):
        for function, binary in FUNCTIONS.items():
            directory = self.build_dir / function
            self.assertEqual(sorted(p.name for p in directory.iterdir()), ["bootstrap"], function)
            bootstrap = directory / "bootstrap"
            self.assertEqual(bootstrap.read_bytes(), stand_in_bytes(binary), function)
            self.assertTrue(os.access(bootstrap, os.X_OK), f"{bootstrap} is not executable")
            # cargo-lambda's place, which SAM copies from.
            lambda_bootstrap = self.target_dir / "lambda" / binary / "bootstrap"
            self.assertEqual(lambda_bootstrap.read_bytes(), stand_in_bytes(binary))

    def test_the_built_template_points_each_function_at_its_bootstrap_on_arm64(self):
        functions = {
            name: r for name, r in self.built["Resources"].items() if r["Type"] == "AWS::Serverless::Function"
        }
        self.assertEqual(set(functions), set(FUNCTIONS))
        globals_ = self.built["Globals"]["Function"]
        for name, resource in functions.items():
            properties = resource["Properties"]
            code = self.build_dir / properties["CodeUri"]
            self.assertEqual((code / "bootstrap").read_bytes(), stand_in_bytes(FUNCTIONS[name]), name)
            self.assertEqual(properties.get("Architectures", globals_.get("Architectures")), ["arm64"], name)
            self.assertEqual(properties.get("Runtime", globals_.get("Runtime")), "provided.al2023", name)
            self.assertEqual(properties.get("Handler", globals_.get("Handler")), "bootstrap", name)

    def test_cached_builds_key_each_function_on_its_crate_not_the_repository(self):
        # `sam build --cached` and `sam sync` hash each function's CodeUri: the crate's few files,
        # not target/ and .venv (over 13 GB here, and changing under any concurrent cargo build).
        self.assertEqual(len([c for c in self.cached_calls if c["caller"] == "sam"]), len(FUNCTIONS))
        graph = (self.build_dir.parent / "build.toml").read_text()
        for binary in FUNCTIONS.values():
            crate = ROOT / "functions" / binary
            self.assertIn(f'codeuri = "{crate}"', graph)
            checksum = dir_checksum(str(crate), ignore_list=[".aws-sam"], hash_generator=hashlib.sha256())
            self.assertIn(f'source_hash = "{checksum}"', graph)
        # The second cached build finds every function unchanged and runs no cargo at all.
        self.assertEqual(self.recached_calls, [])
        self.assertEqual(self.recached_output.count("Valid cache found"), len(FUNCTIONS), self.recached_output)

    def test_nothing_is_written_in_the_repository(self):
        self.assertEqual(repository_outputs(), self.repository_before)


if __name__ == "__main__":
    unittest.main()
