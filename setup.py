"""Build of the optional compiled kernels; the metadata lives in setup.cfg.

Without a C compiler the extension is skipped (``optional=True``) and the
package runs its numpy code instead. It uses CPython's stable ABI from 3.11, so
one wheel per platform serves every later Python; a free-threaded Python has
no stable ABI before 3.15, so there the kernels are built for that Python only.
"""

import sys
import sysconfig

from setuptools import Extension, setup

# The pooled sums must be the numpy code's to the bit: no fused multiply-adds.
_FLAGS = [] if sys.platform == "win32" else ["-O3", "-ffp-contract=off"]
_STABLE_ABI = not sysconfig.get_config_var("Py_GIL_DISABLED")

setup(
    ext_modules=[
        Extension(
            "embedxfer.text._kernels",
            ["embedxfer/text/_kernels.c"],
            define_macros=[("Py_LIMITED_API", "0x030B0000")] if _STABLE_ABI else [],
            py_limited_api=_STABLE_ABI,
            extra_compile_args=_FLAGS,
            optional=True,
        )
    ],
    options={"bdist_wheel": {"py_limited_api": "cp311"}} if _STABLE_ABI else {},
)
