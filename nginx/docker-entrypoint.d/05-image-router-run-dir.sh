#!/bin/sh
# Create the folders that the rendered nginx.conf and its temporary files need.
# The base image's entrypoint runs the scripts in /docker-entrypoint.d in name
# order, so this one runs before 20-envsubst-on-templates.sh writes the config.
set -eu
mkdir -p "$NGINX_ENVSUBST_OUTPUT_DIR" "$IR_RUN_DIR/temp"
