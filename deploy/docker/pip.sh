#!/bin/sh
# pip during the image build, with what build.sh passed in as build secrets (this
# machine's pip configuration and CA bundle), when it did; nothing of it stays in a layer.
set -eu
if [ -s /run/secrets/pip.conf ]; then export PIP_CONFIG_FILE=/run/secrets/pip.conf; fi
if [ -s /run/secrets/ca.pem ]; then export PIP_CERT=/run/secrets/ca.pem; fi
exec pip "$@"
