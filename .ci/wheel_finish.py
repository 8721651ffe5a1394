"""Checks and finishes the wheel that .ci/wheel built; exits non-zero on any failure.

1. Portable code: the extension is built for baseline x86-64. Instructions beyond it
   (VEX/EVEX-encoded, i.e. AVX, AVX2, FMA, AVX-512; BMI, POPCNT, SSSE3/SSE4) may appear
   only in functions compiled for them with ``#[target_feature]`` (found in the sources),
   which run only after the CPU was detected to have them (src/simd.rs), in the Rust
   runtime's own run-time-dispatched ``fma`` and in the ``matrixmultiply`` crate's
   run-time-dispatched kernels. Checked on objdump's disassembly, by symbol.
2. Strips the debug info (the Rust standard library's) and repacks with ``wheel pack``;
   the symbol table stays.
3. ``auditwheel show`` must find the wheel consistent with manylinux_2_17_x86_64
   (manylinux2014, glibc >= 2.17).
4. Metadata: the version is Cargo.toml's, one abi3 wheel for CPython >= 3.9, the licence
   expression, and both licence texts in the wheel's .dist-info and at the sdist's top.

Usage: python .ci/wheel_finish.py --sdist SDIST --out DIR --sources SRC_DIR RAW_WHEEL
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXPECTED_PLATFORM = "manylinux_2_17_x86_64"
EXPECTED_TAG = "cp39-abi3-" + EXPECTED_PLATFORM
LICENCE_FILES = ("LICENSE-MIT", "LICENSE-APACHE")
LICENSE_EXPRESSION = "MIT OR Apache-2.0"

#: Instructions beyond baseline x86-64 (SSE2) that are not VEX/EVEX-encoded.
NON_VEX_EXTENSIONS = re.compile(
    # SSSE3, SSE4.1, SSE4.2 (objdump's AT&T names)
    r"pshufb|palignr|pabs[bwd]|ph(add|sub)(w|d|sw)|pmaddubsw|pmulhrsw|psign[bwd]|ptest|pblend(w|vb)"
    r"|blendv?p[sd]|round[ps][sd]|dpp[sd]|insertps|extractps|pextr[bdq]|pinsr[bdq]|pmaxs[bd]|pmaxu[wd]"
    r"|pmins[bd]|pminu[wd]|pmuldq|pmulld|pmov[sz]x(bw|bd|bq|wd|wq|dq)|packusdw|pcmpeqq|pcmpgtq"
    r"|pcmp[ei]str[im]|crc32[bwlq]?"
    # POPCNT, LZCNT, MOVBE, BMI1, BMI2
    r"|(popcnt|lzcnt|movbe)[wlq]?|(andn|bextr|blsi|blsmsk|blsr|bzhi|mulx|pdep|pext|rorx|sarx|shlx|shrx)[lq]?"
)
#: VEX/EVEX-encoded mnemonics start with "v"; these few "v" mnemonics are not SIMD.
NOT_SIMD_V = re.compile(r"verr|verw|vm[a-z]*")
#: Run-time-dispatched functions that are not rustoptim's: the Rust runtime's `fma`, and the
#: `matrixmultiply` crate's AVX/FMA/AVX-512 kernels and packing (`#[target_feature]` functions it
#: calls only after `is_x86_feature_detected!`; Muon's matrix products).
DISPATCHED_ELSEWHERE = re.compile(
    r"compiler_builtins::math::.*::arch::x86::.*_with_fma4?"
    r"|matrixmultiply::[sd]gemm_kernel::kernel_target_(avx|fma|avx2|avx512)"
    r"|matrixmultiply::packing::pack_(avx|avx2|avx512)"
)
#: `#[target_feature(...)]` (with other attributes after it), then the function's name.
TARGET_FEATURE_FN = re.compile(
    r"#\[target_feature\([^)]*\)\]\s*(?:#\[[^\]]*\]\s*)*(?:pub(?:\([^)]*\))?\s+)?(?:unsafe\s+)?fn\s+(\w+)"
)


def fail(message: str) -> None:
    print(f"wheel: FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def cargo_version() -> str:
    text = (ROOT / "Cargo.toml").read_text()
    package = text.split("[package]", 1)[1].split("\n[", 1)[0]
    match = re.search(r'^version\s*=\s*"([^"]+)"', package, re.MULTILINE)
    if not match:
        fail("no version in Cargo.toml's [package]")
    return match.group(1)


def target_feature_functions(sources: Path) -> list[str]:
    names = set()
    for path in sources.rglob("*.rs"):
        names.update(TARGET_FEATURE_FN.findall(path.read_text()))
    if not names:
        fail(f"no #[target_feature] functions found under {sources}")
    return sorted(names)


def beyond_baseline(mnemonic: str) -> bool:
    if mnemonic.startswith("v"):
        return not NOT_SIMD_V.fullmatch(mnemonic)
    return bool(NON_VEX_EXTENSIONS.fullmatch(mnemonic))


def check_instructions(library: Path, allowed_names: list[str]) -> None:
    """Instructions beyond baseline x86-64 appear only in the allowed functions."""
    listing = subprocess.run(
        ["objdump", "-d", "--no-show-raw-insn", "-C", str(library)],
        check=True, capture_output=True, text=True,
    ).stdout
    allowed = re.compile(r"(^|::)(" + "|".join(map(re.escape, allowed_names)) + r")($|::|<)")
    # (symbol, address) -> count of each instruction beyond baseline in that function
    per_function: dict[tuple[str, str], collections.Counter] = collections.defaultdict(collections.Counter)
    functions = 0
    function = ("<before the first symbol>", "0")
    for line in listing.splitlines():
        header = re.match(r"^([0-9a-f]+) <(.*)>:$", line)
        if header:
            function = (header.group(2), header.group(1).lstrip("0"))
            functions += 1
            continue
        parts = line.split("\t")
        if len(parts) >= 2 and parts[0].rstrip().endswith(":") and parts[1].split():
            mnemonic = parts[1].split()[0]
            if beyond_baseline(mnemonic):
                per_function[function][mnemonic] += 1
    if functions < 100:
        fail(f"{library.name} has {functions} symbols: built stripped, so its instructions cannot be checked")
    outside = {(symbol, address): counts for (symbol, address), counts in per_function.items()
               if not allowed.search(symbol) and not DISPATCHED_ELSEWHERE.fullmatch(symbol)}
    if outside:
        lines = [f"  {symbol} at 0x{address}: {dict(counts.most_common(5))}"
                 for (symbol, address), counts in sorted(outside.items())[:20]]
        fail(f"instructions beyond baseline x86-64 in {len(outside)} functions outside #[target_feature] "
             "functions (built with -C target-cpu or -C target-feature?); the first 20:\n" + "\n".join(lines))
    inside = sum(sum(c.values()) for c in per_function.values())
    if inside == 0:
        fail("no AVX instructions at all: the run-time-dispatched kernels are missing")
    print(f"wheel: baseline x86-64: {inside} AVX/AVX-512 instructions, all in {len(per_function)} "
          f"#[target_feature] functions ({', '.join(allowed_names)}) or the runtime's fma")


def strip_and_repack(raw_wheel: Path, out: Path) -> Path:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "wheel", "unpack", "-d", tmp, str(raw_wheel)],
                       check=True, stdout=subprocess.DEVNULL)
        (unpacked,) = Path(tmp).iterdir()
        for library in unpacked.rglob("*.so"):
            subprocess.run(["objcopy", "--strip-debug", str(library)], check=True)
        before = set(out.glob("*.whl"))
        # Zip timestamps of 1980-01-01, as maturin writes them: the same inputs, the same wheel.
        env = {**os.environ, "SOURCE_DATE_EPOCH": "315532800"}
        subprocess.run([sys.executable, "-m", "wheel", "pack", "-d", str(out), str(unpacked)],
                       check=True, stdout=subprocess.DEVNULL, env=env)
        (wheel,) = set(out.glob("*.whl")) - before
        return wheel


def check_auditwheel(wheel: Path) -> None:
    shown = subprocess.run([sys.executable, "-m", "auditwheel", "show", str(wheel)],
                           capture_output=True, text=True)
    text = " ".join(shown.stdout.split())
    match = re.search(r'consistent with the following platform tag: "([^"]+)"', text)
    if shown.returncode != 0 or not match:
        fail(f"auditwheel show failed:\n{shown.stdout}{shown.stderr}")
    if match.group(1) != EXPECTED_PLATFORM:
        fail(f"auditwheel: {match.group(1)}, expected {EXPECTED_PLATFORM}:\n{shown.stdout}")
    print(f'wheel: auditwheel show: {wheel.name} is consistent with the following platform tag: '
          f'"{match.group(1)}"')


def metadata_fields(text: str, name: str) -> list[str]:
    return re.findall(rf"^{re.escape(name)}: (.*)$", text, re.MULTILINE)


def check_metadata(text: str, version: str, where: str) -> None:
    if metadata_fields(text, "Version") != [version]:
        fail(f"{where}: Version {metadata_fields(text, 'Version')}, Cargo.toml has {version}")
    if metadata_fields(text, "License-Expression") != [LICENSE_EXPRESSION]:
        fail(f"{where}: License-Expression {metadata_fields(text, 'License-Expression')}")
    if sorted(metadata_fields(text, "License-File")) != sorted(LICENCE_FILES):
        fail(f"{where}: License-File {metadata_fields(text, 'License-File')}")
    if metadata_fields(text, "Requires-Python") != [">=3.9"]:
        fail(f"{where}: Requires-Python {metadata_fields(text, 'Requires-Python')}")


def check_wheel_contents(wheel: Path, version: str) -> None:
    dist_info = f"rustoptim-{version}.dist-info"
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        check_metadata(zf.read(f"{dist_info}/METADATA").decode(), version, wheel.name)
        tags = metadata_fields(zf.read(f"{dist_info}/WHEEL").decode(), "Tag")
        if EXPECTED_TAG not in tags:
            fail(f"{wheel.name}: tags {tags}, expected {EXPECTED_TAG}")
        for licence in LICENCE_FILES:
            member = f"{dist_info}/licenses/{licence}"
            if member not in names or zf.read(member) != (ROOT / licence).read_bytes():
                fail(f"{wheel.name}: {member} missing or not the repository's {licence}")
        if not any(n.startswith("rustoptim/_core.abi3") for n in names):
            fail(f"{wheel.name}: no abi3 extension module")
    print(f"wheel: {wheel.name}: version {version}, tag {EXPECTED_TAG}, "
          f"{' and '.join(LICENCE_FILES)} in {dist_info}/licenses")


def check_sdist(sdist: Path, version: str) -> None:
    top = f"rustoptim-{version}"
    with tarfile.open(sdist) as tf:
        names = set(tf.getnames())
        for member in ("PKG-INFO", "pyproject.toml", "Cargo.toml", "Cargo.lock", *LICENCE_FILES):
            if f"{top}/{member}" not in names:
                fail(f"{sdist.name}: no {top}/{member}")
        check_metadata(tf.extractfile(f"{top}/PKG-INFO").read().decode(), version, sdist.name)
        for licence in LICENCE_FILES:
            if tf.extractfile(f"{top}/{licence}").read() != (ROOT / licence).read_bytes():
                fail(f"{sdist.name}: {licence} is not the repository's")
    print(f"wheel: {sdist.name}: version {version}, {' and '.join(LICENCE_FILES)} at its top; "
          f"the wheel was built from it")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sdist", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="where the finished wheel goes")
    parser.add_argument("--sources", type=Path, required=True, help="the src/ the wheel was built from")
    parser.add_argument("raw_wheel", type=Path, help="the wheel maturin built, with symbols")
    args = parser.parse_args()

    version = cargo_version()
    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(args.raw_wheel) as zf:
        (library,) = [n for n in zf.namelist() if n.endswith(".so")]
        check_instructions(Path(zf.extract(library, tmp)), target_feature_functions(args.sources))
    wheel = strip_and_repack(args.raw_wheel, args.out)
    check_auditwheel(wheel)
    check_wheel_contents(wheel, version)
    check_sdist(args.sdist, version)
    print(f"wheel: built {args.sdist} and {wheel}")


if __name__ == "__main__":
    main()
