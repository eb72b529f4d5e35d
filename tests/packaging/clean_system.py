"""A clean minimal system (a debootstrap root, see packaging/clean-root.sh) to install the packages into and
run them in, with the build machine's X server (Xvfb) as the display.

The root holds only the minimal base system and whatever apt installs for the package, so a dependency the
package forgets to declare is missing there, as on a new user's machine.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from pathlib import Path

from tests.conftest import PROJECT_ROOT

ROOTS = PROJECT_ROOT / "build" / "roots"
XVFB = ("xvfb-run", "-a", "-s", "-screen 0 1280x900x24")


class CleanSystem:
    def __init__(self, suite: str):
        self.suite = suite
        self.root = ROOTS / f"{suite}.run"
        self.mounts: list[Path] = []

    def __enter__(self) -> CleanSystem:
        assert os.geteuid() == 0, "the clean-system tests need root (chroot, mount)"
        done = subprocess.run([str(PROJECT_ROOT / "packaging" / "clean-root.sh"), self.suite, str(self.root)],
                              capture_output=True, check=False, text=True, timeout=1800)
        assert done.returncode == 0, done.stdout + done.stderr
        try:
            # Downloads are kept between runs (build/roots/<suite>.apt-cache) so a rerun does not fetch them again.
            archives = ROOTS / f"{self.suite}.apt-cache"
            archives.mkdir(exist_ok=True)
            self._bind(archives, "var/cache/apt/archives")
            self._mount(["-t", "proc", "proc"], "proc")
            self._bind(Path("/dev"), "dev")
            self._bind(Path("/tmp/.X11-unix"), "tmp/.X11-unix")  # the host's Xvfb sockets
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _mount(self, args: list[str], target: str) -> None:
        where = self.root / target
        where.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", *args, str(where)], check=True)
        self.mounts.append(where)

    def _bind(self, source: Path, target: str) -> None:
        source.mkdir(parents=True, exist_ok=True)
        self._mount(["--bind", str(source)], target)

    def __exit__(self, *exc) -> None:
        for where in reversed(self.mounts):
            if subprocess.run(["umount", str(where)], capture_output=True, check=False).returncode != 0:
                subprocess.run(["umount", "-l", str(where)], capture_output=True, check=False)
        self.mounts.clear()
        still_mounted = [line for line in Path("/proc/mounts").read_text().splitlines()
                         if line.split()[1].startswith(f"{self.root.resolve()}/")]
        if not still_mounted:  # never delete through a mount into the host's /dev
            with contextlib.suppress(OSError):
                shutil.rmtree(self.root)

    def path(self, inside: str) -> Path:
        """The host path of a path inside the root."""
        return self.root / inside.lstrip("/")

    def run(self, command: str, *, display: bool = False, timeout: int = 900) -> subprocess.CompletedProcess:
        """Runs a shell command inside the root as a fresh login would (clean environment, HOME=/root);
        with display=True under the host's Xvfb, with DISPLAY and XAUTHORITY passed in and the xcb platform."""
        env = "HOME=/root LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin " \
              "DEBIAN_FRONTEND=noninteractive"
        if display:
            auth = self.path("/tmp/xauthority")
            inner = (f'exec chroot {self.root} env -i {env} DISPLAY="$DISPLAY" XAUTHORITY=/tmp/xauthority '
                     f"QT_QPA_PLATFORM=xcb sh -c {shell_quote(command)}")
            argv = [*XVFB, "-f", str(auth), "sh", "-c", inner]
        else:
            argv = ["chroot", str(self.root), "env", "-i", *env.split(), "sh", "-c", command]
        return subprocess.run(argv, capture_output=True, check=False, text=True, timeout=timeout)

    def must(self, command: str, **kwargs) -> str:
        done = self.run(command, **kwargs)
        assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return done.stdout

    def installed_files(self) -> set[str]:
        """Every path in the root outside the home, /tmp, /proc, /dev and apt's caches."""
        skip = {"root", "tmp", "proc", "dev", "var/cache", "var/lib/apt/lists", "var/log", "run", "sys"}
        found = set()
        # Pruned while walking, not filtered after: /proc is mounted, and its entries vanish under a walker.
        for folder, subfolders, files in os.walk(self.root):
            base = Path(folder).relative_to(self.root).as_posix()
            base = "" if base == "." else base + "/"
            subfolders[:] = [name for name in subfolders if base + name not in skip]
            found.update(base + name for name in files + subfolders)
        return found


def shell_quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"
