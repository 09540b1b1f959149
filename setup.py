"""Build the compiled core (gq/_core/*.pyx).

GQ_DEBUG=1 builds with line tracing, Cython bounds/wraparound checks and C asserts,
so coverage and tracebacks reach into the core; release builds are -O2 with NDEBUG.
"""
import os

from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("GQ_DEBUG", "") not in ("", "0")
MODULES = ["states", "seq", "codec", "heap", "plan", "feed", "pgarrays", "plainjson"]

directives = {"language_level": 3, "embedsignature": True}
macros = []
if DEBUG:
    directives.update(linetrace=True, boundscheck=True, wraparound=True)
    macros += [("CYTHON_TRACE", "1"), ("CYTHON_TRACE_NOGIL", "1")]
    compile_args = ["-O0", "-g3", "-UNDEBUG"]
else:
    directives.update(boundscheck=False, wraparound=False)
    macros += [("NDEBUG", "1")]
    compile_args = ["-O2"]

extensions = [
    Extension(
        f"gq._core.{name}",
        [f"gq/_core/{name}.pyx"],
        define_macros=macros,
        extra_compile_args=compile_args,
    )
    for name in MODULES
]

# force=True: cythonize only regenerates C when a .pyx changes, so without it a
# release build after a GQ_DEBUG=1 build would silently reuse the debug C.
# parallel: the modules compile side by side (codec alone is half the build time)
setup(ext_modules=cythonize(extensions, compiler_directives=directives,
                            gdb_debug=DEBUG, force=True),
      options={"build_ext": {"parallel": os.cpu_count() or 1}})
