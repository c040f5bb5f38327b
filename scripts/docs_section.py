"""What the make targets that measure share: the machine's description and the replacement of a
generated section of a docs page (between `<!-- NAME:begin -->` and `<!-- NAME:end -->`), so a figure
in docs/ is always the output of the command named beside it."""

import os
import subprocess
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cpu():
    """`MODEL, N logical CPUs (the vector extensions that matter here)` from /proc/cpuinfo."""
    model, flags = "unknown CPU", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    isa = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8") if f in flags]
    return f"{model}, {os.cpu_count()} logical CPUs ({', '.join(isa) or 'no AVX2'})"


def commit():
    """The short hash of the checked-out commit (`unknown` outside a git checkout)."""
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def markers(name):
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


def write_section(page, name, body, heading):
    """Replaces section `name` of docs/`page` by `body` (lines, without the markers), or appends it
    under `heading` when the page has no such section yet. Written atomically."""
    begin, end = markers(name)
    text = "\n".join([begin, *body, end])
    path = os.path.join(ROOT, "docs", page)
    with open(path) as f:
        doc = f.read()
    if begin in doc and end in doc:
        doc = doc[: doc.index(begin)] + text + doc[doc.index(end) + len(end):]
    else:
        doc = doc.rstrip("\n") + f"\n\n{heading}\n\n{text}\n"
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(doc)
    os.replace(tmp, path)
    return os.path.relpath(path, ROOT)
