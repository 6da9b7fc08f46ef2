"""constraints.txt pins every dependency of the project on both platforms, and `make install` uses it.

Resolving the pins needs a package index, so it is checked by hand, not here: this file also prints one platform's
pins with the markers already applied (pip evaluates `platform_machine` for the machine it runs on, even with
`--platform`), e.g. for JetPack 6:

    python tests/test_constraints.py aarch64 > /tmp/c.txt
    pip install --dry-run --ignore-installed --target /tmp/t --only-binary=:all: --python-version 3.10 \\
        --implementation cp --platform manylinux_2_28_aarch64 --platform manylinux_2_17_aarch64 \\
        --platform manylinux2014_aarch64 -c /tmp/c.txt -r /tmp/r.txt

with /tmp/r.txt from `python tests/test_constraints.py aarch64 --requirements` (pyproject's dependencies and dev
extra for that platform, torch excepted).
"""

from __future__ import annotations

import platform
import re
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
# platform_machine -> the Python the pins were tested/resolved with
PLATFORMS = {"x86_64": "3.11", "aarch64": "3.10"}
NOT_PINNED = {"torch", "torchvision"}  # the Makefile's TORCH_PAIR; JetPack's own wheels on Jetson


def _name(text: str) -> str:
    return re.sub(r"[-_.]+", "-", text).lower()


def _env(machine: str) -> dict[str, str]:
    env = dict(default_environment())
    env.update(platform_machine=machine, python_version=PLATFORMS[machine], python_full_version=PLATFORMS[machine])
    return env


def pins(machine: str) -> dict[str, Requirement]:
    """name -> the pin in force on `machine` (markers evaluated for it)."""
    out: dict[str, Requirement] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate(_env(machine)):
            assert _name(req.name) not in out, f"{req.name} pinned twice for {machine}"
            out[_name(req.name)] = req
    return out


def project_requirements(machine: str) -> list[Requirement]:
    try:
        import tomllib  # Python >= 3.11
    except ModuleNotFoundError:  # 3.10 (JetPack 6)
        tomllib = pytest.importorskip("tomli", reason="reading pyproject.toml on Python 3.10 needs tomli")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]]
    return [r for r in reqs if _name(r.name) not in NOT_PINNED
            and (r.marker is None or r.marker.evaluate(_env(machine)))]


@pytest.mark.parametrize("machine", list(PLATFORMS))
def test_every_requirement_is_pinned_within_its_range(machine: str) -> None:
    pinned = pins(machine)
    assert not NOT_PINNED & set(pinned), "torch/torchvision come from TORCH_PAIR (or JetPack), not constraints.txt"
    for req in project_requirements(machine):
        pin = pinned.get(_name(req.name))
        assert pin is not None, f"{req.name} has no pin for {machine} in constraints.txt"
        (spec,) = pin.specifier
        assert spec.operator == "==", pin
        assert req.specifier.contains(spec.version, prereleases=True), f"{machine}: {pin} is outside {req}"
    for pin in pinned.values():
        assert [s.operator for s in pin.specifier] == ["=="], pin


def test_jetpack6_gets_a_cp310_onnxruntime() -> None:
    arm = pins("aarch64")
    assert Version(next(iter(arm["onnxruntime"].specifier)).version) <= Version("1.23.2")  # newest cp310 aarch64
    assert Version(next(iter(arm["numpy"].specifier)).version) < Version("2")


def test_make_install_uses_the_constraints() -> None:
    make = (ROOT / "Makefile").read_text()
    installs = [line for line in make.splitlines() if re.search(r"\$\(PIP\) install .*(TORCH_PAIR|\.\[dev\])", line)]
    assert len(installs) == 2 and all("-c $(CONSTRAINTS)" in line for line in installs), installs
    assert re.search(r"^CONSTRAINTS \?= constraints\.txt$", make, re.M)
    assert re.search(r"^\$\(VENV\)/\.installed: .*\$\(CONSTRAINTS\)", make, re.M)  # new pins -> reinstall
    jetson = (ROOT / ".github" / "workflows" / "jetson.yml").read_text()
    assert "pip install -q -c constraints.txt -e '.[dev]'" in jetson


@pytest.mark.skipif(platform.machine() not in PLATFORMS, reason="no pins for this platform")
def test_this_environment_has_the_pinned_onnx_stack() -> None:
    """What the suite runs with is what a fresh `make install` gets (the ONNX stack the artifacts are tested in)."""
    pinned = pins(platform.machine())
    for name in ("onnx", "onnxruntime", "numpy"):
        try:
            have = version(name)
        except PackageNotFoundError:
            pytest.fail(f"{name} is not installed")
        assert pinned[name].specifier.contains(have, prereleases=True), (
            f"{name} {have} is installed but constraints.txt pins {pinned[name]}: `make install`, or update the pin "
            "after testing the new version")


if __name__ == "__main__":  # MACHINE [--requirements]: the pins (or the project's requirements) for MACHINE
    machine = sys.argv[1] if len(sys.argv) > 1 else platform.machine()
    reqs = project_requirements(machine) if "--requirements" in sys.argv else pins(machine).values()
    print("\n".join(f"{r.name}{r.specifier}" for r in reqs))
