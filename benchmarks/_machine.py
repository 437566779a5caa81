"""What a benchmark's figures depend on: the CPU, its cores, the load, the libraries.

Every script in this folder prints :func:`describe` before its tables, so a
table pasted anywhere carries the conditions it was measured under.
"""

import os
import platform

from embedxfer.cli._installed import dist_version

LIBRARIES = (
    "embedxfer",
    "numpy",
    "scipy",
    "scikit-learn",
    "gensim",
    "torch",
    "transformers",
    "sentence-transformers",
    "onnxruntime",
    "pillow",
    "dask",
    "embetter",
)


def cpu_model():
    """The CPU's model name, or the platform's processor string where /proc is absent."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def usable_cores():
    """Cores this process may run on (its affinity), which can be fewer than the machine's."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count()


def library_versions(names=LIBRARIES):
    """``{distribution: version}`` for the installed ones among ``names``."""
    versions = {name: dist_version(name) for name in names}
    return {name: version for name, version in versions.items() if version != "?"}


def describe():
    """One Markdown paragraph: CPU, cores, load average, Python and library versions."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    libraries = ", ".join(f"{name} {version}" for name, version in library_versions().items())
    return (
        f"Machine: {cpu_model()}, {usable_cores()} usable of {os.cpu_count()} cores, "
        f"load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1 / 5 / 15 min), "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}; "
        f"{libraries}. Timings depend on all of these, and on other work running at the "
        "same time: compare rows of one run, not runs of different machines.\n"
    )
