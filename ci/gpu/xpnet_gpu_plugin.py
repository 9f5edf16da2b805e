"""pytest plugin loaded by ci/gpu.sh (``-p xpnet_gpu_plugin``): no hypothesis deadline.

On the GPU the first call of each CuPy kernel compiles it (NVRTC), which can
take a second and would trip hypothesis's default 200 ms deadline.
"""

try:
    from hypothesis import settings
except ImportError:  # pragma: no cover - hypothesis is a test dependency
    pass
else:
    settings.register_profile("xpnet-gpu", deadline=None, print_blob=True)
    settings.load_profile("xpnet-gpu")
