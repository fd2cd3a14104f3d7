"""Markers for the generation tests (pytest runs with --strict-markers)."""


def pytest_configure(config):
    config.addinivalue_line("markers", "diffusers: needs torch, diffusers and transformers (requirements/gpu.txt); "
                                       "skipped where they are not installed")
    config.addinivalue_line("markers", "gpu: needs a CUDA GPU; reported as skipped on machines without one")
