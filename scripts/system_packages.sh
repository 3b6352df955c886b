#!/usr/bin/env bash
# System packages the test suite needs: ffmpeg (ogg/mp3 round trips) and Chromium + ChromeDriver
# (browser tests of the Gradio apps). Installs them with apt when running as root; otherwise
# prints the command to run and fails, so tests never start half-equipped.
set -euo pipefail
missing=()
command -v ffmpeg >/dev/null 2>&1 || missing+=(ffmpeg)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing system packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
  exit 0
fi
echo "The test suite needs these system packages: ${missing[*]}" >&2
echo "Install them, then run 'make test' again:" >&2
echo "    sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
exit 1
