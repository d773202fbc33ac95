"""The baseline's deployment package: what `pip install -t DIR crhelper kubernetes [boto3]` puts
in DIR, plus the two handlers, zipped as a Lambda upload.

Rather than a second install (minutes of network and pip's backtracking between kubernetes and
botocore), it takes the files of those distributions and of every distribution they depend on,
as installed in this venv from the pinned bench/requirements.txt: the same files pip -t would
write, compiled bytecode included. awslambdaric is left out (Lambda's Python runtime has its own).

    python package.py OUT.zip [--level=9] [--with-boto3]    prints {"zip_bytes": …, "files": …}
    python package.py OUT.zip [--level=9] --file=PATH:NAME  one file (our bootstraps), the same way
"""

import json
import re
import sys
import zipfile
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent


def closure(names):
    seen, todo = {}, list(names)
    while todo:
        name = re.split(r"[ ;<>=!~\[(]", todo.pop(), maxsplit=1)[0].strip()
        key = name.lower().replace("_", "-")
        if not key or key in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # an optional extra that is not installed
        seen[key] = dist
        for requirement in dist.requires or []:
            if "extra ==" not in requirement:
                todo.append(requirement)
    return seen.values()


def main():
    out, flags = Path(sys.argv[1]), sys.argv[2:]
    level = next((int(f.split("=", 1)[1]) for f in flags if f.startswith("--level=")), 9)
    single = next((f.split("=", 1)[1] for f in flags if f.startswith("--file=")), None)
    if single is not None:
        path, name = single.rsplit(":", 1)
        entries = [(Path(path), name)]
    else:
        names = ["crhelper", "kubernetes"] + (["boto3"] if "--with-boto3" in flags else [])
        entries = [(HERE / h, h) for h in ("discovery.py", "aws_auth.py")]
        for dist in closure(names):
            for f in dist.files or []:
                path = Path(dist.locate_file(f))
                if path.is_file() and not str(f).startswith(".."):
                    entries.append((path, str(f)))
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=level) as z:
        for path, name in entries:
            z.write(path, name)
    print(json.dumps({"zip_bytes": out.stat().st_size, "files": len(entries)}))


if __name__ == "__main__":
    main()
