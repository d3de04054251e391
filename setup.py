"""Build lowprec's Cython kernel modules.

Every ``lowprec/_kernels/_NAME.pyx`` becomes the extension ``lowprec._kernels._NAME`` and is
linked with the C sources ``lowprec/_kernels/src/NAME*.c`` (the portable kernels in
``NAME.c``, the ISA-specific ones in ``NAME_avx2.c`` and similar).  ISA-specific functions carry
``__attribute__((target(...)))`` themselves, so no file is compiled with a global ``-mavx2`` or
``-march=native``: the built package imports on any x86-64 and builds unchanged on ARM.

OpenMP is probed with the compiler that will build the extensions.  Without it (or with
``LOWPREC_NO_OPENMP=1``) the build goes on serially with a warning: every kernel still works,
on one thread.
"""

import glob
import os
import sys
import tempfile
import textwrap
import warnings

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

KERNEL_DIR = os.path.join("lowprec", "_kernels")
SRC_DIR = os.path.join(KERNEL_DIR, "src")
ISA_SUFFIXES = ("", "_avx2", "_avx512", "_neon")
# C files a module links besides its own family's (a kernel shared across families).
EXTRA_SOURCES = {"_embedding": ["bag_check.c"]}

OPENMP_PROBE = textwrap.dedent(
    """
    #include <omp.h>
    int main(void) {
        int n = 0;
        #pragma omp parallel reduction(+:n)
        n += 1;
        return n > 0 ? 0 : 1;
    }
    """
)


def openmp_flag_candidates(compiler_type):
    """(compile flags, link flags) to try, in order, for this compiler family."""
    if compiler_type == "msvc":
        return [(["/openmp"], [])]
    if sys.platform == "darwin":
        # Apple clang needs libomp from Homebrew; plain clang/gcc take -fopenmp.
        return [(["-fopenmp"], ["-fopenmp"]), (["-Xpreprocessor", "-fopenmp"], ["-lomp"])]
    return [(["-fopenmp"], ["-fopenmp"])]


def probe_openmp(compiler):
    """Return the (compile, link) flags that build and link an OpenMP program, or None."""
    if os.environ.get("LOWPREC_NO_OPENMP", "") not in ("", "0"):
        return None
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "probe_openmp.c")
        with open(src, "w") as f:
            f.write(OPENMP_PROBE)
        for cflags, ldflags in openmp_flag_candidates(compiler.compiler_type):
            try:
                objs = compiler.compile([src], output_dir=tmp, extra_postargs=cflags)
                compiler.link_executable(
                    objs, os.path.join(tmp, "probe_openmp"), extra_postargs=ldflags
                )
            except Exception:  # any compiler/linker failure means: not this flag set
                continue
            return cflags, ldflags
    return None


class BuildExtWithOpenMP(build_ext):
    """build_ext that adds OpenMP flags when the compiler supports them."""

    def build_extensions(self):
        flags = probe_openmp(self.compiler)
        if flags is None:
            warnings.warn(
                "lowprec: OpenMP not available (or LOWPREC_NO_OPENMP set); "
                "building serial kernels.",
                stacklevel=1,
            )
        for ext in self.extensions:
            if self.compiler.compiler_type == "msvc":
                ext.extra_compile_args += ["/O2"]
            else:
                # -O3 for auto-vectorisation of the portable loops.  No -ffast-math: the
                # kernels depend on IEEE rounding, NaN and signed-zero semantics.
                ext.extra_compile_args += ["-O3", "-std=c11", "-Wno-unused-function"]
            if flags is not None:
                ext.extra_compile_args += flags[0]
                ext.extra_link_args += flags[1]
        super().build_extensions()


def kernel_extensions():
    headers = sorted(glob.glob(os.path.join(SRC_DIR, "*.h")))
    extensions = []
    for pyx in sorted(glob.glob(os.path.join(KERNEL_DIR, "_*.pyx"))):
        name = os.path.splitext(os.path.basename(pyx))[0]  # "_bf16"
        family = name[1:]  # "bf16"
        # A family's C files are NAME.c (portable) and NAME_<isa>.c; "quant.c" must not
        # pick up the files of a family "quant_rowwise".
        c_sources = sorted(
            path
            for path in glob.glob(os.path.join(SRC_DIR, family + "*.c"))
            if os.path.basename(path)[len(family) : -len(".c")] in ISA_SUFFIXES
        ) + [os.path.join(SRC_DIR, f) for f in EXTRA_SOURCES.get(name, [])]
        extensions.append(
            Extension(
                "lowprec._kernels." + name,
                sources=[pyx] + c_sources,
                include_dirs=[SRC_DIR, np.get_include()],
                depends=headers,
                define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
                language="c",
            )
        )
    return extensions


setup(
    ext_modules=cythonize(
        kernel_extensions(),
        compiler_directives={
            "language_level": 3,
            "boundscheck": False,
            "wraparound": False,
            "initializedcheck": False,
            "cdivision": True,
            "embedsignature": True,
        },
    ),
    cmdclass={"build_ext": BuildExtWithOpenMP},
)
