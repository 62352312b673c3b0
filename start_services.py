#!/usr/bin/env python3
"""Start the self-hosted AI stack with its secrets from Infisical (see README.md).

The launcher itself is `stack_launcher.cli:main`. This file only makes sure it can be
imported, with the standard library alone, so that `python3 start_services.py ...` works
in a fresh clone:

- the dependencies import (the usual case): run the launcher; the only cost is one
  `importlib.util.find_spec` per dependency;
- they don't, and `.venv` (next to this file) exists: run again with `.venv`'s Python;
- they don't and there is no `.venv`: say so in one line, create `.venv`, install the
  project into it with pip (its own progress shown), and run again with it.

When that cannot work (no venv/ensurepip, pip failing, a broken `.venv`, or
START_SERVICES_NO_BOOTSTRAP=1) it prints one line with the command to run by hand and
exits 2. Its messages go to stderr, and so does pip's output: stdout stays the launcher's.
"""
import os
import sys
from importlib.util import find_spec

# Import name -> distribution name: pyproject.toml's [project].dependencies, no more, no less
# (tests/test_first_run_bootstrap.py holds the two lists together).
DEPENDENCIES = (("typer", "typer"), ("rich", "rich"), ("dotenv", "python-dotenv"), ("pyrage", "pyrage"))
MIN_PYTHON = (3, 10)
NO_BOOTSTRAP_VAR = "START_SERVICES_NO_BOOTSTRAP"
# Set for the re-run ("switched" to .venv, or "installed" into it) and removed by it at once:
# a .venv that still lacks the dependencies is then reported, never re-run or installed again.
_REEXEC_VAR = "_START_SERVICES_RERUN"
EXIT_BOOTSTRAP = 2
WINDOWS = os.name == "nt"


def _missing():
    return [dist for module, dist in DEPENDENCIES if find_spec(module) is None]


# ----------------------------------------------------------------- the first-run bootstrap
# Everything below runs only when a dependency is missing or Python is too old.

def _say(text):
    sys.stderr.write("start_services.py: " + text + "\n")
    sys.stderr.flush()


def _fail(text):
    sys.stderr.write("error: " + text + "\n")
    sys.stderr.flush()
    sys.exit(EXIT_BOOTSTRAP)


def _shown(path):
    """`path` as a user would type it here: relative to the working directory when inside it."""
    try:
        rel = os.path.relpath(path)
    except (ValueError, OSError):  # another drive (Windows); no working directory
        rel = path
    if rel == os.pardir or rel.startswith(os.pardir + os.sep):
        rel = path
    if WINDOWS:
        return '"' + rel + '"' if " " in rel else rel
    import shlex
    return shlex.quote(rel)


def _venv_python(venv):
    if WINDOWS:
        return os.path.join(venv, "Scripts", "python.exe")
    return os.path.join(venv, "bin", "python")


def _same_path(a, b):
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.normcase(os.path.realpath(a)) == os.path.normcase(os.path.realpath(b))


def _remove_tree(cmd_path):
    return ("rmdir /s /q " if WINDOWS else "rm -rf ") + cmd_path


def _run_again(python, script, why):
    """Run this script again with `python` and the same arguments; never returns."""
    argv = [python, script] + sys.argv[1:]
    env = dict(os.environ, **{_REEXEC_VAR: why})
    if WINDOWS:  # os.execv on Windows starts a new process and returns at once
        import subprocess
        proc = subprocess.Popen(argv, env=env)
        while True:
            try:
                sys.exit(proc.wait())
            except KeyboardInterrupt:  # the console sent Ctrl-C to the child as well
                continue
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(python, argv, env)


def bootstrap(script):
    """Get a Python with the dependencies and run `script` with it, or exit 2 with one line."""
    came_from = os.environ.pop(_REEXEC_VAR, "")  # "switched" or "installed": this is a re-run
    project = os.path.dirname(script)
    venv = os.path.join(project, ".venv")
    venv_python = _venv_python(venv)
    py = "python" if WINDOWS else "python3"
    here = sys.executable or py
    in_venv = os.path.isdir(venv) and _same_path(sys.prefix, venv)
    if sys.version_info[:2] < MIN_PYTHON:
        problem = "start_services.py needs Python %d.%d or newer; %s is %d.%d" % (
            MIN_PYTHON + (here,) + tuple(sys.version_info[:2]))
        missing = None
    else:
        missing = _missing()
        problem = "%s %s not installed for %s" % (
            ", ".join(missing), "is" if len(missing) == 1 else "are", here)
    rerun = " ".join([_shown(venv_python), _shown(script)] + [_quote(a) for a in sys.argv[1:]])
    by_hand = "%s -m venv %s && %s -m pip install -e %s" % (
        py, _shown(venv), _shown(venv_python), _shown(project))

    def broken(why):
        _fail("%s is broken (%s); remove it and run again: %s" % (_shown(venv), why, _remove_tree(_shown(venv))))

    if os.environ.get(NO_BOOTSTRAP_VAR, "") not in ("", "0"):
        if missing is None:
            _fail(problem)
        if not in_venv and os.path.isfile(venv_python):
            _fail("%s (%s is set: not switching to .venv); run: %s" % (problem, NO_BOOTSTRAP_VAR, rerun))
        _fail("%s (%s is set: not creating .venv); install them: %s; then run: %s"
              % (problem, NO_BOOTSTRAP_VAR, by_hand, rerun))

    if in_venv:
        # .venv's own Python without the dependencies: an install that was cut short, or a
        # .venv made by hand. Install into it once; if that does not help, it is broken.
        if missing is None:
            _fail("%s; remove .venv and run again with a newer Python: %s" % (problem, _remove_tree(_shown(venv))))
        if came_from == "installed":
            broken("%s still missing after pip installed them" % ", ".join(missing))
        if find_spec("pip") is None:
            broken("%s missing, and no pip to install them" % ", ".join(missing))
        _say("%s; installing the project's dependencies into .venv with pip" % problem)
        _install(venv_python, project)
        _run_again(venv_python, script, "installed")

    if os.path.lexists(venv):
        if not os.path.isfile(venv_python):
            broken("no %s" % _shown(venv_python))
        if came_from:  # .venv's python ran, but not as .venv (a copy or link of another Python)
            broken("%s does not run as .venv's Python" % _shown(venv_python))
        try:
            _run_again(venv_python, script, "switched")
        except OSError as exc:
            broken("%s does not run: %s" % (_shown(venv_python), exc.strerror or exc))

    if missing is None:
        _fail(problem + "; run it with a newer python3")

    _check_venv_module(here)
    _say("first run: creating %s and installing the project's dependencies into it with pip "
         "(%s); later runs use it directly" % (_shown(venv), problem))
    _create_venv(venv, here)
    _install(venv_python, project)
    _run_again(venv_python, script, "installed")


def _quote(arg):
    if WINDOWS:
        return '"' + arg + '"' if (" " in arg or not arg) else arg
    import shlex
    return shlex.quote(arg)


def _debian_venv_hint():
    package = "python%d.%d-venv" % sys.version_info[:2]
    sudo = "" if WINDOWS or os.geteuid() == 0 else "sudo "
    return "install Debian's python3-venv (for this Python: %s) and run again: %sapt install %s" % (
        package, sudo, package)


def _check_venv_module(here):
    # Debian ships `venv` with Python but ensurepip (and the pip wheel) in python3.X-venv:
    # without it `python3 -m venv` fails after making a .venv with no pip.
    if find_spec("venv") is None or find_spec("ensurepip") is None:
        if os.path.exists("/etc/debian_version"):
            _fail("cannot create .venv: this Python (%s) has no ensurepip; %s" % (here, _debian_venv_hint()))
        _fail("cannot create .venv: this Python (%s) has no venv/ensurepip module; "
              "run start_services.py with a Python that has one" % here)


def _create_venv(venv, here):
    import shutil
    import subprocess
    try:
        done = subprocess.run([sys.executable, "-m", "venv", venv], stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    except KeyboardInterrupt:
        shutil.rmtree(venv, ignore_errors=True)
        _say("interrupted; removed the unfinished .venv")
        sys.exit(130)
    except OSError as exc:
        _fail("cannot run %s -m venv (%s)" % (here, exc.strerror or exc))
    if done.returncode != 0:
        shutil.rmtree(venv, ignore_errors=True)  # half made: no pip, and it would look broken later
        output = done.stdout.decode(errors="replace")
        if "ensurepip" in output and os.path.exists("/etc/debian_version"):
            _fail("cannot create .venv: ensurepip is not available; " + _debian_venv_hint())
        lines = [line.strip() for line in output.splitlines() if line.strip()]
        _fail("`%s -m venv .venv` failed (exit %d%s)" % (
            here, done.returncode, ": " + lines[-1] if lines else ""))


def _install(venv_python, project):
    import subprocess
    sys.stderr.flush()
    argv = [venv_python, "-m", "pip", "install", "--disable-pip-version-check", "-e", project]
    try:
        # pip's output goes to stderr: the launcher's stdout (e.g. `doctor --json`) stays clean.
        code = subprocess.call(argv, stdin=subprocess.DEVNULL, stdout=sys.stderr.fileno())
    except KeyboardInterrupt:
        _say("interrupted; the next run finishes installing into .venv")
        sys.exit(130)
    except OSError as exc:
        _fail("cannot run %s (%s)" % (venv_python, exc.strerror or exc))
    if code != 0:
        _fail("pip could not install the dependencies into .venv (exit %d, its messages are above); check "
              "the network or pip's index settings and run again, or by hand: %s -m pip install -e %s"
              % (code, _shown(venv_python), _shown(project)))


def main():
    if sys.version_info[:2] >= MIN_PYTHON and not _missing():
        os.environ.pop(_REEXEC_VAR, None)
        from stack_launcher import head_start
        try:
            head_start.begin(sys.argv[1:])  # a re-run's export starts before typer is even imported
            from stack_launcher.cli import main as launcher_main
        except BaseException as exc:  # a Ctrl-C or SIGTERM in the meantime: one line, its exit code
            sys.exit(head_start.stopped(exc, sys.argv[1:]))
        launcher_main()
    else:
        bootstrap(os.path.realpath(__file__))


if __name__ == "__main__":
    main()
