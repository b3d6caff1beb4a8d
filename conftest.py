"""Plugins every pytest run of this repository loads.

Declared here, in the root conftest, rather than with ``-p`` in addopts: conftests are imported
after coverage starts, so the plugin's modules are measured like any other.
"""

pytest_plugins = ["compliance.pytest_plugin"]
